// Bilinear resampling of one-channel images under one affine map per image, zero outside the image: the
// augmentation's distortion (lenet_tf.data.augment.affine_sample), which TensorFlow's ImageProjectiveTransformV3
// computes one pixel at a time through a generic generator (about 11 ns a pixel).
//
//   LenetAffineWarp(images [N, H, W, 1], maps [N, 6]) -> [N, H, W, 1]: output (x, y) reads the input at
//       (m0*x + m1*y + m2, m3*x + m4*y + m5); pixel centres at integers; each of the four neighbours outside
//       the image reads 0 (a frame of zeros, every corner index clipped into it).
//
// Eight pixels at a time with AVX2 gathers where the CPU has them (the same arithmetic one pixel at a time
// elsewhere and for a row's last pixels).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "tf_op.h"

namespace lenet_ops {
namespace {

REGISTER_OP("LenetAffineWarp")
    .Input("images: float")
    .Input("maps: float")
    .Output("warped: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle images, maps;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &images));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &maps));
      c->set_output(0, images);
      return Status();
    });

// v clipped into [lo, hi]; a NaN gives lo (never an index outside the frame).
inline float Clip(float v, float lo, float hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

// The sample of pixel (x, y) = (j, i): bilinear from `framed` (the image inside a one-pixel frame of zeros,
// rows of `stride` floats), each corner index clipped into the frame.
inline float Sample(const float* framed, int32_t stride, float last_x, float last_y, float sx, float sy) {
  const float fx = std::floor(sx), fy = std::floor(sy);
  const float wx = sx - fx, wy = sy - fy;
  const int32_t x0 = static_cast<int32_t>(Clip(fx, -1.0f, last_x)) + 1;
  const int32_t x1 = static_cast<int32_t>(Clip(fx + 1.0f, -1.0f, last_x)) + 1;
  const int32_t y0 = (static_cast<int32_t>(Clip(fy, -1.0f, last_y)) + 1) * stride;
  const int32_t y1 = (static_cast<int32_t>(Clip(fy + 1.0f, -1.0f, last_y)) + 1) * stride;
  const float top = (1.0f - wx) * framed[y0 + x0] + wx * framed[y0 + x1];
  const float bottom = (1.0f - wx) * framed[y1 + x0] + wx * framed[y1 + x1];
  return (1.0f - wy) * top + wy * bottom;
}

#ifdef __AVX2__
// The same for 8 consecutive pixels of a row, with AVX2 gathers (what compilers do not vectorise by themselves).
// _mm256_max_ps returns its second operand for a NaN: a NaN coordinate is clipped to -1, as in Clip.
inline __m256 Sample8(const float* framed, __m256i stride, __m256 last_x, __m256 last_y, __m256 sx, __m256 sy) {
  const __m256 one = _mm256_set1_ps(1.0f), minus_one = _mm256_set1_ps(-1.0f);
  const __m256i one_i = _mm256_set1_epi32(1);
  const __m256 fx = _mm256_floor_ps(sx), fy = _mm256_floor_ps(sy);
  const __m256 wx = _mm256_sub_ps(sx, fx), wy = _mm256_sub_ps(sy, fy);
  auto clip = [&](__m256 v, __m256 hi) {
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, minus_one), hi));
  };
  const __m256i x0 = _mm256_add_epi32(clip(fx, last_x), one_i);
  const __m256i x1 = _mm256_add_epi32(clip(_mm256_add_ps(fx, one), last_x), one_i);
  const __m256i y0 = _mm256_mullo_epi32(_mm256_add_epi32(clip(fy, last_y), one_i), stride);
  const __m256i y1 = _mm256_mullo_epi32(_mm256_add_epi32(clip(_mm256_add_ps(fy, one), last_y), one_i), stride);
  auto at = [&](__m256i row, __m256i column) {
    return _mm256_i32gather_ps(framed, _mm256_add_epi32(row, column), 4);
  };
  const __m256 ux = _mm256_sub_ps(one, wx);
  const __m256 top = _mm256_add_ps(_mm256_mul_ps(ux, at(y0, x0)), _mm256_mul_ps(wx, at(y0, x1)));
  const __m256 bottom = _mm256_add_ps(_mm256_mul_ps(ux, at(y1, x0)), _mm256_mul_ps(wx, at(y1, x1)));
  return _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, wy), top), _mm256_mul_ps(wy, bottom));
}
#endif

// One image: `framed` is it inside a one-pixel frame of zeros, [h + 2, w + 2]; `out` is [h, w].
void WarpImage(const float* framed, int32_t h, int32_t w, const float* m, float* out) {
  const int32_t stride = w + 2;
  const float last_x = static_cast<float>(w), last_y = static_cast<float>(h);
  for (int32_t i = 0; i < h; ++i) {
    const float y = static_cast<float>(i);
    const float base_x = m[1] * y + m[2], base_y = m[4] * y + m[5];
    int32_t j = 0;
#ifdef __AVX2__
    const __m256 lanes = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (; j + 8 <= w; j += 8) {
      const __m256 x = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(j)), lanes);
      const __m256 sx = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(m[0]), x), _mm256_set1_ps(base_x));
      const __m256 sy = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(m[3]), x), _mm256_set1_ps(base_y));
      _mm256_storeu_ps(out + i * w + j, Sample8(framed, _mm256_set1_epi32(stride), _mm256_set1_ps(last_x),
                                                _mm256_set1_ps(last_y), sx, sy));
    }
#endif
    for (; j < w; ++j) {
      const float x = static_cast<float>(j);
      out[i * w + j] = Sample(framed, stride, last_x, last_y, m[0] * x + base_x, m[3] * x + base_y);
    }
  }
}

class AffineWarpOp : public OpKernel {
 public:
  explicit AffineWarpOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& images = ctx->input(0);
    const Tensor& maps = ctx->input(1);
    OP_REQUIRES(ctx, images.dims() == 4 && images.dim_size(3) == 1,
                tensorflow::errors::InvalidArgument("images must be [N, H, W, 1], got ",
                                                    images.shape().DebugString()));
    const int64_t n = images.dim_size(0), h = images.dim_size(1), w = images.dim_size(2);
    OP_REQUIRES(ctx, maps.shape() == TensorShape({n, 6}),
                tensorflow::errors::InvalidArgument("maps must be [N, 6] for ", n, " images, got ",
                                                    maps.shape().DebugString()));
    OP_REQUIRES(ctx, h > 0 && w > 0 && h < (1 << 15) && w < (1 << 15),
                tensorflow::errors::InvalidArgument("images must have sides in [1, 32767]"));
    Tensor* warped;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, images.shape(), &warped));
    const int64_t stride = w + 2;
    std::vector<float> framed((h + 2) * stride, 0.0f);  // the image inside a one-pixel frame of zeros
    const float* in = images.flat<float>().data();
    const float* all_maps = maps.flat<float>().data();
    float* out = warped->flat<float>().data();
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < h; ++i) std::copy(in + (k * h + i) * w, in + (k * h + i + 1) * w,
                                                framed.data() + (i + 1) * stride + 1);
      WarpImage(framed.data(), static_cast<int32_t>(h), static_cast<int32_t>(w), all_maps + 6 * k, out + k * h * w);
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("LenetAffineWarp").Device(DEVICE_CPU), AffineWarpOp);

}  // namespace
}  // namespace lenet_ops
