// What both native op files need of TensorFlow's framework: ops, kernels and shape functions.
#ifndef LENET_TF_NATIVE_TF_OP_H_
#define LENET_TF_NATIVE_TF_OP_H_

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace lenet_ops {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

}  // namespace lenet_ops

#endif  // LENET_TF_NATIVE_TF_OP_H_
