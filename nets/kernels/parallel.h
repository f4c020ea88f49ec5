// Task parallelism for the kernels: OpenMP dynamic scheduling over independent tasks.
//
// Dynamic (not static) scheduling because the machines this runs on are often shared: a
// descheduled thread must not hold the others at a barrier. Each task writes a disjoint output
// (or a per-task scratch slot), so results never depend on which thread ran a task.
// Built without -fopenmp the pragma is ignored and tasks run serially (still correct).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace lpk {

template <class F>
void parallel_tasks(int64_t n_tasks, const F& task) {
  if (n_tasks <= 0) return;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_tasks)));
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t t = 0; t < n_tasks; ++t) task(t);
}

// Runs body(lo, hi) over [0, n) in consecutive blocks of `block` items, one task per block.
template <class F>
void parallel_blocks(int64_t n, int64_t block, const F& body) {
  const int64_t tasks = (n + block - 1) / block;
  parallel_tasks(tasks, [&](int64_t t) { body(t * block, std::min(n, (t + 1) * block)); });
}

}  // namespace lpk
