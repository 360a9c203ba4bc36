// Torch bindings of ganzoo's fused ops: argument checks, layouts, output
// allocation and the choice between the CPU and CUDA launch functions
// (declared in fused_ops.h). The Python side (ganzoo/ops) wraps these in
// autograd Functions; nothing here records autograd history.
// Per-operator ATen headers and torch's pybind casters rather than
// <torch/extension.h>: the same bindings compile in about half the time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/version.h>

#include <algorithm>

#include <string>
#include <tuple>

#include "fused_ops.h"

#ifdef GANZOO_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ganzoo {
namespace {

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK(false, "ganzoo fused ops take float32, float64, float16 or bfloat16 tensors, got ",
                  t.scalar_type());
  }
}

at::ScalarType acc_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

void check_same(const at::Tensor& t, const at::Tensor& ref, const char* what) {
  TORCH_CHECK(t.device() == ref.device(), "ganzoo: ", what, " is on ", t.device(), ", expected ",
              ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "ganzoo: ", what, " is ", t.scalar_type(),
              ", expected ", ref.scalar_type());
}

// Kernels read memory as flat [outer][channels][inner]: any dense layout
// (contiguous, channels_last, ...) works as is; anything else is copied.
at::Tensor dense(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense() ? t : t.contiguous();
}

// `t` with exactly the strides of `ref` (a dense tensor of the same shape).
at::Tensor like(const at::Tensor& t, const at::Tensor& ref, const char* what) {
  TORCH_CHECK(t.sizes() == ref.sizes(), "ganzoo: ", what, " has shape ", t.sizes(), ", expected ",
              ref.sizes());
  check_same(t, ref, what);
  if (t.strides() == ref.strides()) return t;
  return at::empty_like(ref).copy_(t);
}

// Per-sample kernels need the batch dim outermost in dense memory.
at::Tensor batch_major(const at::Tensor& t) {
  TORCH_CHECK(t.dim() >= 1, "ganzoo: expected a batch of samples (B, ...), got a 0-d tensor");
  if (t.is_non_overlapping_and_dense() &&
      (t.size(0) <= 1 || t.stride(0) * t.size(0) == t.numel()))
    return t;
  return t.contiguous();
}

int64_t channel_dim(const at::Tensor& t, int64_t dim) {
  TORCH_CHECK(dim >= 0 && dim < t.dim(), "ganzoo: dim ", dim, " is out of range for a ", t.dim(),
              "-d tensor");
  return dim;
}

// Sets channels and inner for the bias of `t` along `dim`.
void set_channels(ActParams& p, const at::Tensor& t, int64_t dim) {
  p.channels = t.size(channel_dim(t, dim));
  // A single channel is one run over everything (its stride means nothing).
  p.inner = p.channels > 1 ? t.stride(dim) : std::max<int64_t>(t.numel(), 1);
}

#ifdef GANZOO_WITH_CUDA
void check_cuda(const char* error, const char* op) {
  TORCH_CHECK(error == nullptr, "ganzoo: CUDA kernel of ", op, " failed: ", error);
}
#endif

#define GANZOO_NO_CUDA(op) \
  TORCH_CHECK(false, "ganzoo: this build of the fused ops has no CUDA kernels (", op, ")")

at::Tensor act(const at::Tensor& v_in, const c10::optional<at::Tensor>& bias_in,
               const c10::optional<at::Tensor>& mask_in, double mask_sign, double slope,
               double gain, int64_t dim) {
  const at::Tensor v = dense(v_in);
  const DType dtype = dtype_of(v);
  ActParams p;
  p.n = v.numel();
  p.slope = slope;
  p.gain = gain;
  p.mask_sign = mask_sign;
  at::Tensor bias, mask;
  if (bias_in && bias_in->defined()) {
    bias = bias_in->contiguous();
    check_same(bias, v, "bias");
    set_channels(p, v, dim);
    TORCH_CHECK(bias.numel() == p.channels, "ganzoo: bias has ", bias.numel(),
                " values for ", p.channels, " channels");
  }
  if (mask_in && mask_in->defined()) mask = like(*mask_in, v, "the saved tensor");
  at::Tensor out = at::empty_like(v);
  if (p.n == 0) return out;
  const void* b = bias.defined() ? bias.data_ptr() : nullptr;
  const void* m = mask.defined() ? mask.data_ptr() : nullptr;
  if (v.is_cuda()) {
#ifdef GANZOO_WITH_CUDA
    const c10::cuda::CUDAGuard guard(v.device());
    check_cuda(act_cuda(dtype, v.data_ptr(), b, m, out.data_ptr(), p,
                        c10::cuda::getCurrentCUDAStream().stream()),
               "fused_leaky_relu");
#else
    GANZOO_NO_CUDA("fused_leaky_relu");
#endif
  } else {
    TORCH_CHECK(v.is_cpu(), "ganzoo: no kernel for device ", v.device());
    act_cpu(dtype, v.data_ptr(), b, m, out.data_ptr(), p);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> grad(const at::Tensor& u_in, const at::Tensor& mask_in,
                                        double mask_sign, double slope, double gain, int64_t dim,
                                        bool want_bias) {
  const at::Tensor mask = dense(mask_in);
  const at::Tensor u = like(u_in, mask, "the incoming gradient");
  const DType dtype = dtype_of(mask);
  ActParams p;
  p.n = mask.numel();
  p.slope = slope;
  p.gain = gain;
  p.mask_sign = mask_sign;
  at::Tensor out = at::empty_like(mask);
  at::Tensor bias_grad;
  if (want_bias) {
    set_channels(p, mask, dim);
    bias_grad = at::zeros({p.channels}, mask.options().dtype(acc_type(mask)));
  }
  if (p.n > 0) {
    void* db = bias_grad.defined() ? bias_grad.data_ptr() : nullptr;
    if (mask.is_cuda()) {
#ifdef GANZOO_WITH_CUDA
      const c10::cuda::CUDAGuard guard(mask.device());
      check_cuda(grad_cuda(dtype, u.data_ptr(), mask.data_ptr(), out.data_ptr(), db, p,
                           c10::cuda::getCurrentCUDAStream().stream()),
                 "fused_leaky_relu backward");
#else
      GANZOO_NO_CUDA("fused_leaky_relu backward");
#endif
    } else {
      TORCH_CHECK(mask.is_cpu(), "ganzoo: no kernel for device ", mask.device());
      grad_cpu(dtype, u.data_ptr(), mask.data_ptr(), out.data_ptr(), db, p);
    }
  }
  if (bias_grad.defined()) bias_grad = bias_grad.to(mask.scalar_type());
  return {out, bias_grad};
}

at::Tensor interpolate(const at::Tensor& real_in, const at::Tensor& fake_in,
                       const at::Tensor& eps_in, bool fma) {
  const at::Tensor real = batch_major(real_in);
  const at::Tensor fake = like(fake_in, real, "fake");
  const DType dtype = dtype_of(real);
  const int64_t batch = real.size(0);
  TORCH_CHECK(eps_in.numel() == batch, "ganzoo: eps has ", eps_in.numel(), " values for a batch of ",
              batch);
  TORCH_CHECK(eps_in.device() == real.device(), "ganzoo: eps is on ", eps_in.device(),
              ", expected ", real.device());
  // Rounded to the data's dtype first, as the reference does.
  const at::Tensor eps = eps_in.reshape({batch}).to(real.scalar_type()).contiguous();
  at::Tensor out = at::empty_like(real);
  const int64_t per = batch > 0 ? real.numel() / batch : 0;
  if (real.numel() == 0) return out;
  if (real.is_cuda()) {
#ifdef GANZOO_WITH_CUDA
    const c10::cuda::CUDAGuard guard(real.device());
    check_cuda(interpolate_cuda(dtype, real.data_ptr(), fake.data_ptr(), eps.data_ptr(),
                                out.data_ptr(), batch, per, fma,
                                c10::cuda::getCurrentCUDAStream().stream()),
               "interpolate");
#else
    GANZOO_NO_CUDA("interpolate");
#endif
  } else {
    TORCH_CHECK(real.is_cpu(), "ganzoo: no kernel for device ", real.device());
    interpolate_cpu(dtype, real.data_ptr(), fake.data_ptr(), eps.data_ptr(), out.data_ptr(), batch,
                    per, fma);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> penalty_forward(const at::Tensor& g_in, double weight,
                                                   double center) {
  const at::Tensor g = batch_major(g_in);
  const DType dtype = dtype_of(g);
  const int64_t batch = g.size(0);
  TORCH_CHECK(batch > 0, "ganzoo: the gradient penalty needs a non-empty batch");
  const int64_t per = g.numel() / batch;
  at::Tensor norms = at::empty({batch}, g.options());
  at::Tensor penalty = at::empty({}, g.options());
  if (g.is_cuda()) {
#ifdef GANZOO_WITH_CUDA
    const c10::cuda::CUDAGuard guard(g.device());
    at::Tensor sumsq = at::zeros({batch}, g.options().dtype(acc_type(g)));
    check_cuda(penalty_forward_cuda(dtype, g.data_ptr(), sumsq.data_ptr(), norms.data_ptr(),
                                    penalty.data_ptr(), batch, per, weight, center,
                                    c10::cuda::getCurrentCUDAStream().stream()),
               "gradient_penalty");
#else
    GANZOO_NO_CUDA("gradient_penalty");
#endif
  } else {
    TORCH_CHECK(g.is_cpu(), "ganzoo: no kernel for device ", g.device());
    penalty_forward_cpu(dtype, g.data_ptr(), norms.data_ptr(), penalty.data_ptr(), batch, per,
                        weight, center);
  }
  return {penalty, norms};
}

at::Tensor penalty_backward(const at::Tensor& dP_in, const at::Tensor& g_in,
                            const at::Tensor& norms_in, double weight, double center) {
  const at::Tensor g = batch_major(g_in);
  const DType dtype = dtype_of(g);
  const int64_t batch = g.size(0);
  const int64_t per = batch > 0 ? g.numel() / batch : 0;
  const at::Tensor dP = dP_in.reshape({}).to(g.scalar_type()).contiguous();
  const at::Tensor norms = norms_in.to(g.scalar_type()).contiguous();
  check_same(dP, g, "the penalty's gradient");
  check_same(norms, g, "norms");
  TORCH_CHECK(norms.numel() == batch, "ganzoo: ", norms.numel(), " norms for a batch of ", batch);
  at::Tensor dg = at::empty_like(g);
  if (g.numel() == 0) return dg;
  if (g.is_cuda()) {
#ifdef GANZOO_WITH_CUDA
    const c10::cuda::CUDAGuard guard(g.device());
    check_cuda(penalty_backward_cuda(dtype, dP.data_ptr(), g.data_ptr(), norms.data_ptr(),
                                     dg.data_ptr(), batch, per, weight, center,
                                     c10::cuda::getCurrentCUDAStream().stream()),
               "gradient_penalty backward");
#else
    GANZOO_NO_CUDA("gradient_penalty backward");
#endif
  } else {
    TORCH_CHECK(g.is_cpu(), "ganzoo: no kernel for device ", g.device());
    penalty_backward_cpu(dtype, dP.data_ptr(), g.data_ptr(), norms.data_ptr(), dg.data_ptr(), batch,
                         per, weight, center);
  }
  return dg;
}

pybind11::dict info() {
  pybind11::dict d;
#ifdef GANZOO_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." +
                       std::to_string(TORCH_VERSION_MINOR) + "." +
                       std::to_string(TORCH_VERSION_PATCH);
  return d;
}

}  // namespace
}  // namespace ganzoo

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ganzoo fused ops: leaky ReLU with bias and gain, gradient penalty (see ganzoo.ops)";
  m.def("act", &ganzoo::act, "gain * lrelu(v + bias), mask from v + bias or a saved tensor",
        pybind11::arg("v"), pybind11::arg("bias"), pybind11::arg("mask_src"),
        pybind11::arg("mask_sign"), pybind11::arg("slope"), pybind11::arg("gain"),
        pybind11::arg("dim"));
  m.def("grad", &ganzoo::grad, "masked gain of u, and its per-channel sum",
        pybind11::arg("u"), pybind11::arg("mask_src"), pybind11::arg("mask_sign"),
        pybind11::arg("slope"), pybind11::arg("gain"), pybind11::arg("dim"),
        pybind11::arg("want_bias"));
  m.def("interpolate", &ganzoo::interpolate, "lerp(fake, real, eps[b]) per sample",
        pybind11::arg("real"), pybind11::arg("fake"), pybind11::arg("eps"), pybind11::arg("fma"));
  m.def("penalty_forward", &ganzoo::penalty_forward, "(weight * mean((|g_b| - c)^2), |g_b|)");
  m.def("penalty_backward", &ganzoo::penalty_backward, "d penalty / d g");
  m.def("info", &ganzoo::info, "how this build was made");
}
