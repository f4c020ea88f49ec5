// torch bindings of the CPU lp-distance kernels (see lp_dist_fwd.h / lp_dist_bwd.h).
// Inputs are checked here (2-D, contiguous, same dtype float32/float64, CPU); the Python
// wrapper in nets/kernels/cpu.py makes them contiguous and owns the autograd logic.
#include <torch/extension.h>

#include <cmath>
#include <mutex>
#include <string>
#include <type_traits>

#include "lp_dist_bwd.h"
#include "lp_dist_fwd.h"
#include "pow_split.h"

namespace {

void check_pair(const torch::Tensor& x, const torch::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2, "x and w must be 2-D");
  TORCH_CHECK(x.size(1) == w.size(1), "x and w must have the same number of columns");
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "CPU tensors expected");
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), "x and w must have the same dtype");
  TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
              "float32 or float64 expected");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "contiguous tensors expected");
}

void check_bn(const torch::Tensor& t, const torch::Tensor& x, int64_t B, int64_t N) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == N && t.is_contiguous() &&
                  t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
              "[B, N] contiguous tensor of the inputs' dtype expected");
}

// Integer exponent k >= 0 (as int) when q is an integer up to 4096, else -1.
int int_exponent(double q) {
  return (q >= 0 && q <= 4096 && std::floor(q) == q) ? static_cast<int>(q) : -1;
}

// Calls fn(pw) with the u^q evaluator for this dtype and exponent: PowInt for an integer q, for a
// float32 non-integer q PowSplitF where its setup meets its error bound, else PowRealF / PowRealD.
// force_explog (tests, benchmarks) skips PowSplitF.
template <class T, class F>
void with_pow(double q, const F& fn, bool force_explog = false) {
  const T thr = static_cast<T>(lpk::cut_threshold(q));
  const int k = int_exponent(q);
  if (k >= 0) return fn(lpk::PowInt<T>{k, thr});
  if constexpr (std::is_same<T, float>::value) {
    lpk::PowSplitF ps;
    if (!force_explog && lpk::make_pow_split(q, &ps)) return lpk::with_split_exponent(ps, fn);
  }
  fn(typename lpk::PowReal<T>::type{static_cast<T>(q), thr});
}

// Which evaluator with_pow picks for float32: "int", "split" or "explog".
std::string pow_path(double q) {
  std::string name;
  with_pow<float>(q, [&](const auto& pw) {
    using P = std::decay_t<decltype(pw)>;
    name = lpk::is_split_pow<P>::value ? "split"
           : std::is_same<P, lpk::PowRealF>::value ? "explog" : "int";
  });
  return name;
}

// u^q elementwise (float32, 1-D contiguous), by the evaluator with_pow picks (or exp2/log2), for tests.
// generic: the runtime-loop form the kernels' edge tiles use (PowSplitF::batch, not PowSplitAt<n>).
torch::Tensor pow_eval(torch::Tensor u, double q, bool force_explog, bool generic) {
  TORCH_CHECK(u.dim() == 1 && u.is_contiguous() && u.scalar_type() == torch::kFloat && u.device().is_cpu(),
              "1-D contiguous float32 CPU tensor expected");
  TORCH_CHECK(std::isfinite(q) && q >= 0.0, "finite q >= 0 expected");
  auto out = u.clone();
  float* p = out.data_ptr<float>();
  const int64_t n = out.numel();
  constexpr int W = lpk::VT<float>::W;
  with_pow<float>(q, [&](const auto& pw) {
    lpk::FlushGuard guard;  // as in the kernels
    for (int64_t i = 0; i < n; i += W) {
      const int r = static_cast<int>(std::min<int64_t>(W, n - i));
      lpk::Vec<float> v = lpk::vload_part(p + i, r);
      if (generic) lpk::generic_pow(pw).template batch<1>(&v);
      else pw.template batch<1>(&v);
      lpk::vstore_part(p + i, v, r);
    }
  }, force_explog);
  return out;
}

torch::Tensor linf_forward(torch::Tensor x, torch::Tensor w) {
  check_pair(x, w);
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  auto y = torch::zeros({B, N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linf_forward", [&] {
    lpk::linf_forward<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                y.data_ptr<scalar_t>(), B, N, D);
  });
  return y;
}

// y and the first D block (int32) holding each pair's maximal coordinate (for the backward).
std::vector<torch::Tensor> linf_forward_blk(torch::Tensor x, torch::Tensor w) {
  check_pair(x, w);
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  auto y = torch::zeros({B, N}, x.options());
  auto blk = torch::zeros({B, N}, x.options().dtype(torch::kInt));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linf_forward_blk", [&] {
    lpk::linf_forward<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                B, N, D, blk.data_ptr<int32_t>());
  });
  return {y, blk};
}

torch::Tensor lp_forward(torch::Tensor x, torch::Tensor w, double p, bool force_explog) {
  check_pair(x, w);
  TORCH_CHECK(std::isfinite(p) && p >= 1.0, "finite p >= 1 expected");
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  auto y = torch::zeros({B, N}, x.options());
  auto s = torch::zeros({B, N}, x.options());
  auto inv = torch::empty({B, N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lp_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    lpk::linf_forward<scalar_t>(xp, wp, yp, B, N, D);
    with_pow<scalar_t>(p, [&](const auto& pw) {
      lpk::lp_forward_from_inf<scalar_t>(xp, wp, yp, s.data_ptr<scalar_t>(), inv.data_ptr<scalar_t>(),
                                         B, N, D, p, pw);
    }, force_explog);
  });
  return y;
}

torch::Tensor linf_argmax(torch::Tensor x, torch::Tensor w, torch::Tensor y,
                          c10::optional<torch::Tensor> blk) {
  check_pair(x, w);
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  check_bn(y, x, B, N);
  const bool has_blk = blk.has_value() && blk->defined();
  if (has_blk)
    TORCH_CHECK(blk->scalar_type() == torch::kInt && blk->is_contiguous() && blk->size(0) == B &&
                    blk->size(1) == N, "blk must be a contiguous int32 [B, N] tensor");
  auto am = torch::empty({B, N}, x.options().dtype(torch::kLong));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linf_argmax", [&] {
    lpk::linf_argmax<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                               am.data_ptr<int64_t>(), B, N, D,
                               has_blk ? blk->data_ptr<int32_t>() : nullptr);
  });
  return am;
}

std::vector<torch::Tensor> linf_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                         torch::Tensor am, bool need_gx, bool need_gw) {
  check_pair(x, w);
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  check_bn(g, x, B, N);
  TORCH_CHECK(am.scalar_type() == torch::kLong && am.is_contiguous() && am.size(0) == B &&
                  am.size(1) == N, "am must be a contiguous int64 [B, N] tensor");
  auto gx = need_gx ? torch::zeros_like(x) : torch::Tensor();
  auto gw = need_gw ? torch::zeros_like(w) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linf_backward", [&] {
    lpk::linf_backward<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                 am.data_ptr<int64_t>(), need_gx ? gx.data_ptr<scalar_t>() : nullptr,
                                 need_gw ? gw.data_ptr<scalar_t>() : nullptr, B, N, D);
  });
  return {gx, gw};
}

// A zero-filled scratch buffer of n elements of x's dtype for the finite-p backward's partial
// gradients. Up to kScratchCap bytes it is one buffer kept between calls (held by `lock` while in
// use): a fresh allocation of that size is a fresh mmap whose page faults cost as much as 8% of the
// backward (25 MB at B = 512, D = 784: 10-20 ms, measured). Larger ones, or a call while another
// thread holds the buffer, get a fresh allocation.
torch::Tensor backward_scratch(int64_t n, const torch::Tensor& x, std::unique_lock<std::mutex>& lock) {
  constexpr int64_t kScratchCap = int64_t(64) << 20;
  static std::mutex mu;
  static torch::Tensor& kept = *new torch::Tensor();  // never destroyed: no teardown-order issues
  const int64_t bytes = n * static_cast<int64_t>(x.element_size());
  if (bytes <= kScratchCap) {
    std::unique_lock<std::mutex> l(mu, std::try_to_lock);
    if (l.owns_lock()) {
      if (!kept.defined() || kept.scalar_type() != x.scalar_type() || kept.numel() < n)
        kept = torch::empty({n}, x.options());
      lock = std::move(l);
      return kept.narrow(0, 0, n).zero_();
    }
  }
  return torch::zeros({n}, x.options());
}

std::vector<torch::Tensor> lp_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                       torch::Tensor y, double p, bool need_gx, bool need_gw,
                                       bool force_explog) {
  check_pair(x, w);
  TORCH_CHECK(std::isfinite(p) && p >= 1.0, "finite p >= 1 expected");
  const int64_t B = x.size(0), N = w.size(0), D = x.size(1);
  check_bn(g, x, B, N);
  check_bn(y, x, B, N);
  auto gx = need_gx ? torch::zeros_like(x) : torch::Tensor();
  auto gw = need_gw ? torch::zeros_like(w) : torch::Tensor();
  const int64_t chunks = lpk::lp_backward_chunks(N);
  torch::Tensor parts;
  std::unique_lock<std::mutex> scratch_lock;
  if (need_gx && chunks > 1) parts = backward_scratch(chunks * B * D, x, scratch_lock);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lp_backward", [&] {
    scalar_t* gxp = need_gx ? gx.data_ptr<scalar_t>() : nullptr;
    scalar_t* gwp = need_gw ? gw.data_ptr<scalar_t>() : nullptr;
    scalar_t* pp = parts.defined() ? parts.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    with_pow<scalar_t>(p - 1.0, [&](const auto& pw) {
      lpk::lp_backward<scalar_t>(gp, xp, wp, yp, gxp, gwp, pp, B, N, D, pw);
    }, force_explog);
  });
  return {gx, gw};
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "linfverify CPU lp-distance kernels";
  m.def("linf_forward", &linf_forward, "y[b,n] = max_d |x[b,d] - w[n,d]|");
  m.def("lp_forward", &lp_forward, "y[b,n] = ||x[b] - w[n]||_p, finite p >= 1", py::arg("x"),
        py::arg("w"), py::arg("p"), py::arg("force_explog") = false);
  m.def("linf_forward_blk", &linf_forward_blk, "linf_forward plus the first D block of each max");
  m.def("linf_argmax", &linf_argmax, "first d with |x[b,d] - w[n,d]| == y[b,n] (-1 if none)",
        py::arg("x"), py::arg("w"), py::arg("y"), py::arg("blk") = py::none());
  m.def("linf_backward", &linf_backward, "p = inf gradients from the argmax");
  m.def("lp_backward", &lp_backward, "finite-p gradients", py::arg("g"), py::arg("x"), py::arg("w"),
        py::arg("y"), py::arg("p"), py::arg("need_gx"), py::arg("need_gw"),
        py::arg("force_explog") = false);
  m.def("pow_path", &pow_path, "float32 u^q evaluator the kernels use: int, split or explog");
  m.def("pow_eval", &pow_eval, "u^q by the kernels' float32 evaluator (tests)", py::arg("u"),
        py::arg("q"), py::arg("force_explog") = false, py::arg("generic") = false);
  m.def("has_openmp", &has_openmp, "compiled with OpenMP");
}
