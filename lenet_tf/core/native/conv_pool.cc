// LeNet-5's first block as one kernel: a stride-1 VALID 5x5 convolution of a one-channel image followed by
// 2x2 max pooling (stride 2), with its gradients. oneDNN's kernels are slow on this shape (one input channel,
// six outputs): most of a training step went into them and into the full-resolution tensors between them.
//
//   LenetConvPool(x [N, H, W, 1], w [5, 5, 1, K], b [K], relu) -> pooled [N, (H-4)/2, (W-4)/2, K] float32,
//       argmax [N, (H-4)/2, (W-4)/2, K] uint8: pooled = max over the window + b (then max(., 0) with relu);
//       argmax = 2*row + column of the window's first maximum, as MaxPool's gradient, or 4 where the ReLU
//       is off (no gradient flows there). Pooling before the bias and ReLU is the same function, since both
//       are non-decreasing.
//   LenetConvPoolFilterGrad(x, argmax, dpooled) -> dw [5, 5, 1, K], db [K]
//   LenetConvPoolInputGrad(w, argmax, dpooled, H, W) -> dx [N, H, W, 1]
//
// Each image's convolution is computed per output channel as rows of contiguous columns, which the compiler
// vectorises; gradients scatter each pooled gradient to its maximum's position in a per-image plane and
// correlate that plane with the image (filter) or the turned filter (input). Sums run in a fixed order, so
// results are deterministic. Single-threaded per call: training gives each core its own shard of the batch.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tf_op.h"

namespace lenet_ops {
namespace {

constexpr int kSize = 5;       // the filters are 5x5
constexpr int kLanes = 32;     // a convolution row is computed as 32 columns (two AVX-512 vectors); W - 4 <= 32
constexpr int kPadded = kLanes + kSize - 1 + 4;  // a padded image row: every tap of every lane reads inside it

REGISTER_OP("LenetConvPool")
    .Input("x: float")
    .Input("w: float")
    .Input("b: float")
    .Attr("relu: bool = false")
    .Output("pooled: float")
    .Output("argmax: uint8")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, w;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &w));
      DimensionHandle h, width;
      TF_RETURN_IF_ERROR(c->Subtract(c->Dim(x, 1), kSize - 1, &h));
      TF_RETURN_IF_ERROR(c->Subtract(c->Dim(x, 2), kSize - 1, &width));
      TF_RETURN_IF_ERROR(c->Divide(h, 2, true, &h));
      TF_RETURN_IF_ERROR(c->Divide(width, 2, true, &width));
      ShapeHandle out = c->MakeShape({c->Dim(x, 0), h, width, c->Dim(w, 3)});
      c->set_output(0, out);
      c->set_output(1, out);
      return Status();
    });

REGISTER_OP("LenetConvPoolFilterGrad")
    .Input("x: float")
    .Input("argmax: uint8")
    .Input("dpooled: float")
    .Output("dw: float")
    .Output("db: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &d));
      c->set_output(0, c->MakeShape({kSize, kSize, 1, c->Dim(d, 3)}));
      c->set_output(1, c->MakeShape({c->Dim(d, 3)}));
      return Status();
    });

REGISTER_OP("LenetConvPoolInputGrad")
    .Input("w: float")
    .Input("argmax: uint8")
    .Input("dpooled: float")
    .Attr("height: int")
    .Attr("width: int")
    .Output("dx: float")
    .SetShapeFn([](InferenceContext* c) {
      int height, width;
      TF_RETURN_IF_ERROR(c->GetAttr("height", &height));
      TF_RETURN_IF_ERROR(c->GetAttr("width", &width));
      ShapeHandle d;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &d));
      c->set_output(0, c->MakeShape({c->Dim(d, 0), height, width, 1}));
      return Status();
    });

// The shapes every kernel checks: images [N, H, W, 1] with (H-4) and (W-4) even, pooled [N, Ho, Wo, K].
struct Geometry {
  int64_t n, h, w, ho, wo, k;
  int64_t conv_h() const { return 2 * ho; }
  int64_t conv_w() const { return 2 * wo; }
};

bool CheckImages(OpKernelContext* ctx, const TensorShape& x, int64_t k, Geometry* g) {
  if (x.dims() != 4 || x.dim_size(3) != 1) {
    ctx->SetStatus(tensorflow::errors::InvalidArgument("x must be [N, H, W, 1], got ", x.DebugString()));
    return false;
  }
  if (x.dim_size(1) < kSize || x.dim_size(2) < kSize || (x.dim_size(1) - kSize + 1) % 2 != 0 ||
      (x.dim_size(2) - kSize + 1) % 2 != 0 || x.dim_size(2) - kSize + 1 > kLanes) {
    ctx->SetStatus(tensorflow::errors::InvalidArgument(
        "the convolution's output must have even sides and at most 32 columns, got x ", x.DebugString()));
    return false;
  }
  *g = {x.dim_size(0), x.dim_size(1), x.dim_size(2), (x.dim_size(1) - kSize + 1) / 2,
        (x.dim_size(2) - kSize + 1) / 2, k};
  return true;
}

// Sixteen floats as one value (two AVX2 or one AVX-512 register); loads and stores need no alignment.
typedef float Vec __attribute__((vector_size(64)));
typedef int32_t Ints __attribute__((vector_size(64)));
inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// One image as its rows shifted left by 0..4 columns, zero beyond its width: [H, 5, kLanes], so that every
// load of the convolution loops is a whole aligned vector (shifted loads straddle cache lines and halve the
// loads per cycle).
class ShiftedImage {
 public:
  explicit ShiftedImage(int64_t height) : storage_(height * kSize * kLanes + 16) {
    rows_ = storage_.data() + (16 - reinterpret_cast<uintptr_t>(storage_.data()) / sizeof(float) % 16) % 16;
  }
  void Fill(const Geometry& g, const float* image) {
    float padded[kPadded];
    for (int64_t i = 0; i < g.h; ++i) {
      std::copy(image + i * g.w, image + (i + 1) * g.w, padded);
      std::fill(padded + g.w, padded + kPadded, 0.0f);
      for (int v = 0; v < kSize; ++v) std::copy(padded + v, padded + v + kLanes, Row(i, v));
    }
  }
  // Row i of the image shifted left by v columns (kLanes floats, 64-byte aligned).
  const float* Row(int64_t i, int v) const { return rows_ + (i * kSize + v) * kLanes; }
  float* Row(int64_t i, int v) { return rows_ + (i * kSize + v) * kLanes; }

 private:
  std::vector<float> storage_;
  float* rows_;
};

// One pooling row p (kLanes / 2 windows) of one channel: the two convolution rows under it, row0 and row1, sum
// the six image rows from 2p on, each shifted by v columns times its tap; then each 2x2 window's
// maximum plus the bias (then the ReLU) and the position of its first maximum in the order (0,0), (0,1), (1,0),
// (1,1), as MaxPool's gradient, or 4 where the ReLU is off. Branch-free: the ReLU's sign is unpredictable.
inline void PooledRow(const ShiftedImage& image, int64_t p, const float* __restrict taps, float bias, bool relu,
                      float* best, int32_t* where) {
  Vec a0 = {}, b0 = {}, a1 = {}, b1 = {};
#pragma GCC unroll 6
  for (int t = 0; t <= kSize; ++t) {
#pragma GCC unroll 5
    for (int v = 0; v < kSize; ++v) {
      const float* line = image.Row(2 * p + t, v);
      const Vec x = Load(line), y = Load(line + 16);
      if (t < kSize) {
        const float tap = taps[t * kSize + v];
        a0 += tap * x;
        b0 += tap * y;
      }
      if (t > 0) {
        const float tap = taps[(t - 1) * kSize + v];
        a1 += tap * x;
        b1 += tap * y;
      }
    }
  }
  const Ints even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const Ints odd = even + 1;
  const Vec window[4] = {__builtin_shuffle(a0, b0, even), __builtin_shuffle(a0, b0, odd),
                         __builtin_shuffle(a1, b1, even), __builtin_shuffle(a1, b1, odd)};
  Vec m = window[0];
  Ints at = {};
  for (int i = 1; i < 4; ++i) {
    at = window[i] > m ? Ints{} + i : at;
    m = window[i] > m ? window[i] : m;
  }
  m += bias;
  if (relu) {
    const Ints off = !(m > 0.0f);
    at = off ? Ints{} + 4 : at;
    m = off ? Vec{} : m;
  }
  Store(best, m);
  std::memcpy(where, &at, sizeof at);
}

// The pooled gradient of one image scattered to each window's first maximum: rows [K, 2*Ho, kLanes], zero
// elsewhere. `d` and `at` are scratch of K * Ho * kLanes / 2 floats and ints.
void ScatterToMaxima(const Geometry& g, const float* dpooled, const uint8_t* argmax, float* rows, float* d,
                     int32_t* at) {
  constexpr int kHalf = kLanes / 2;
  std::fill(d, d + g.k * g.ho * kHalf, 0.0f);
  std::fill(at, at + g.k * g.ho * kHalf, 0);
  for (int64_t p = 0; p < g.ho; ++p)  // [p, q, k] -> [k, p, q], q padded to kHalf
    for (int64_t q = 0; q < g.wo; ++q)
      for (int64_t c = 0; c < g.k; ++c) {
        d[(c * g.ho + p) * kHalf + q] = dpooled[(p * g.wo + q) * g.k + c];
        at[(c * g.ho + p) * kHalf + q] = argmax[(p * g.wo + q) * g.k + c];
      }
  const Ints low = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  const Ints high = low + 8;
  for (int64_t c = 0; c < g.k; ++c) {
    for (int64_t p = 0; p < g.ho; ++p) {
      const Vec grad = Load(d + (c * g.ho + p) * kHalf);
      Ints where;
      std::memcpy(&where, at + (c * g.ho + p) * kHalf, sizeof where);
      for (int r = 0; r < 2; ++r) {  // row 2p + r: column 2q gets the gradient if the maximum was (r, 0), ...
        const Vec even = where == 2 * r ? grad : Vec{}, odd = where == 2 * r + 1 ? grad : Vec{};
        float* row = rows + (c * 2 * g.ho + 2 * p + r) * kLanes;
        Store(row, __builtin_shuffle(even, odd, low));
        Store(row + 16, __builtin_shuffle(even, odd, high));
      }
    }
  }
}

class ConvPoolOp : public OpKernel {
 public:
  explicit ConvPoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relu", &relu_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    const Tensor& b = ctx->input(2);
    OP_REQUIRES(ctx, w.dims() == 4 && w.dim_size(0) == kSize && w.dim_size(1) == kSize && w.dim_size(2) == 1,
                tensorflow::errors::InvalidArgument("w must be [5, 5, 1, K], got ", w.shape().DebugString()));
    OP_REQUIRES(ctx, b.shape() == TensorShape({w.dim_size(3)}),
                tensorflow::errors::InvalidArgument("b must be [K], got ", b.shape().DebugString()));
    const float* biases = b.flat<float>().data();
    Geometry g;
    if (!CheckImages(ctx, x.shape(), w.dim_size(3), &g)) return;
    Tensor *pooled, *argmax;
    const TensorShape out({g.n, g.ho, g.wo, g.k});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out, &pooled));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, out, &argmax));
    const float* images = x.flat<float>().data();
    const float* filters = w.flat<float>().data();  // [u][v][k]
    float* pooled_out = pooled->flat<float>().data();
    uint8_t* argmax_out = argmax->flat<uint8_t>().data();
    ShiftedImage shifted(g.h);
    // The taps of each channel contiguous: [K, 25].
    std::vector<float> taps(g.k * kSize * kSize);
    for (int64_t c = 0; c < g.k; ++c)
      for (int t = 0; t < kSize * kSize; ++t) taps[c * kSize * kSize + t] = filters[t * g.k + c];
    alignas(64) float best[kLanes / 2];
    alignas(64) int32_t where[kLanes / 2];
    for (int64_t n = 0; n < g.n; ++n) {
      shifted.Fill(g, images + n * g.h * g.w);
      for (int64_t p = 0; p < g.ho; ++p) {
        for (int64_t c = 0; c < g.k; ++c) {
          PooledRow(shifted, p, taps.data() + c * kSize * kSize, biases[c], relu_, best, where);
          for (int64_t q = 0; q < g.wo; ++q) {
            const int64_t at = ((n * g.ho + p) * g.wo + q) * g.k + c;
            pooled_out[at] = best[q];
            argmax_out[at] = where[q];
          }
        }
      }
    }
  }

 private:
  bool relu_;
};

class ConvPoolFilterGradOp : public OpKernel {
 public:
  explicit ConvPoolFilterGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& argmax = ctx->input(1);
    const Tensor& dpooled = ctx->input(2);
    Geometry g;
    if (!CheckImages(ctx, x.shape(), dpooled.dims() == 4 ? dpooled.dim_size(3) : 0, &g)) return;
    const TensorShape expected({g.n, g.ho, g.wo, g.k});
    OP_REQUIRES(ctx, dpooled.shape() == expected && argmax.shape() == expected,
                tensorflow::errors::InvalidArgument("dpooled and argmax must be ", expected.DebugString()));
    Tensor *dw, *db;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({kSize, kSize, 1, g.k}), &dw));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({g.k}), &db));
    // The bias's gradient: the pooled gradient where it flows (argmax < 4), summed per channel in a fixed order.
    const float* d_all = dpooled.flat<float>().data();
    const uint8_t* at_all = argmax.flat<uint8_t>().data();
    float* d_bias = db->flat<float>().data();
    std::fill(d_bias, d_bias + g.k, 0.0f);
    for (int64_t i = 0; i < g.n * g.ho * g.wo; ++i)
      for (int64_t c = 0; c < g.k; ++c) d_bias[c] += d_all[i * g.k + c] * (at_all[i * g.k + c] < 4);
    const int64_t ch = g.conv_h();
    std::vector<float> rows(g.k * ch * kLanes), scratch(g.k * g.ho * kLanes / 2);
    ShiftedImage shifted(g.h);
    std::vector<int32_t> where(g.k * g.ho * kLanes / 2);
    // Per (k, u, v) one accumulator per column lane, summed once at the end: vectorised and deterministic.
    std::vector<float> lanes(g.k * kSize * kSize * kLanes, 0.0f);
    const float* images = x.flat<float>().data();
    for (int64_t n = 0; n < g.n; ++n) {
      const int64_t offset = n * g.ho * g.wo * g.k;
      ScatterToMaxima(g, dpooled.flat<float>().data() + offset, argmax.flat<uint8_t>().data() + offset,
                      rows.data(), scratch.data(), where.data());
      shifted.Fill(g, images + n * g.h * g.w);
      for (int64_t c = 0; c < g.k; ++c) {
        for (int u = 0; u < kSize; ++u) {
          Vec lo[kSize] = {}, hi[kSize] = {};
          for (int64_t i = 0; i < ch; ++i) {
            const float* grad = rows.data() + (c * ch + i) * kLanes;
            const Vec g_lo = Load(grad), g_hi = Load(grad + 16);
#pragma GCC unroll 5
            for (int v = 0; v < kSize; ++v) {
              const float* line = shifted.Row(i + u, v);
              lo[v] += g_lo * Load(line);
              hi[v] += g_hi * Load(line + 16);
            }
          }
          for (int v = 0; v < kSize; ++v) {
            float* lane = lanes.data() + ((c * kSize + u) * kSize + v) * kLanes;
            Store(lane, Load(lane) + lo[v]);
            Store(lane + 16, Load(lane + 16) + hi[v]);
          }
        }
      }
    }
    float* out = dw->flat<float>().data();  // [u][v][k]
    for (int64_t c = 0; c < g.k; ++c) {
      for (int u = 0; u < kSize; ++u) {
        for (int v = 0; v < kSize; ++v) {
          const float* lane = lanes.data() + ((c * kSize + u) * kSize + v) * kLanes;
          float sum = 0.0f;
          for (int j = 0; j < kLanes; ++j) sum += lane[j];
          out[(u * kSize + v) * g.k + c] = sum;
        }
      }
    }
  }
};

class ConvPoolInputGradOp : public OpKernel {
 public:
  explicit ConvPoolInputGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("height", &height_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("width", &width_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& w = ctx->input(0);
    const Tensor& argmax = ctx->input(1);
    const Tensor& dpooled = ctx->input(2);
    OP_REQUIRES(ctx, dpooled.dims() == 4,
                tensorflow::errors::InvalidArgument("dpooled must be [N, Ho, Wo, K]"));
    Geometry g;
    if (!CheckImages(ctx, TensorShape({dpooled.dim_size(0), height_, width_, 1}), dpooled.dim_size(3), &g)) return;
    const TensorShape expected({g.n, g.ho, g.wo, g.k});
    OP_REQUIRES(ctx, dpooled.shape() == expected && argmax.shape() == expected &&
                         w.shape() == TensorShape({kSize, kSize, 1, g.k}),
                tensorflow::errors::InvalidArgument("inconsistent shapes for the input gradient"));
    Tensor* dx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({g.n, g.h, g.w, 1}), &dx));
    const int64_t ch = g.conv_h(), cw = g.conv_w();
    std::vector<float> rows(g.k * ch * kLanes), scratch(g.k * g.ho * kLanes / 2);
    std::vector<int32_t> where(g.k * g.ho * kLanes / 2);
    const float* filters = w.flat<float>().data();
    float* out = dx->flat<float>().data();
    for (int64_t n = 0; n < g.n; ++n) {
      const int64_t offset = n * g.ho * g.wo * g.k;
      ScatterToMaxima(g, dpooled.flat<float>().data() + offset, argmax.flat<uint8_t>().data() + offset,
                      rows.data(), scratch.data(), where.data());
      float* image = out + n * g.h * g.w;
      std::fill(image, image + g.h * g.w, 0.0f);
      for (int64_t c = 0; c < g.k; ++c) {
        for (int64_t i = 0; i < ch; ++i) {
          const float* grad = rows.data() + (c * ch + i) * kLanes;
          for (int u = 0; u < kSize; ++u) {
            float* line = image + (i + u) * g.w;
            for (int v = 0; v < kSize; ++v) {
              const float tap = filters[(u * kSize + v) * g.k + c];
              for (int64_t j = 0; j < cw; ++j) line[j + v] += tap * grad[j];
            }
          }
        }
      }
    }
  }

 private:
  int height_, width_;
};

REGISTER_KERNEL_BUILDER(Name("LenetConvPool").Device(DEVICE_CPU), ConvPoolOp);
REGISTER_KERNEL_BUILDER(Name("LenetConvPoolFilterGrad").Device(DEVICE_CPU), ConvPoolFilterGradOp);
REGISTER_KERNEL_BUILDER(Name("LenetConvPoolInputGrad").Device(DEVICE_CPU), ConvPoolInputGradOp);

}  // namespace
}  // namespace lenet_ops
