// The per-candidate heads of a scored request in one pass (service.kernels.heads wraps it):
// the calibrated exit distribution softmax(-logits / T) over each candidate's outcomes 0..N,
// the video table's mix, and what the response carries from it (predicted and median exit
// slot, expected and median watch time, completion probability). The numpy path of
// service.ranker computes the same, operation for operation (float64, no FMA contraction: the
// build passes -ffp-contract=off); sums may add in another order, so values agree within a few
// units in the last place (tests/service/test_compiled_heads.py).
#include <cmath>
#include <cstdint>

namespace {
constexpr double SEGMENT_MS = 5000.0;

// Watch time (ms) of ending in slot j of a video of d ms with n = ceil(d / 5 s) segments:
// mid-segment capped at the duration, all of it for the completion slot (j >= n).
inline double slot_watch_ms(int64_t j, double d, double n) {
  const double mid = (static_cast<double>(j) + 0.5) * SEGMENT_MS;
  return static_cast<double>(j) < n ? (mid < d ? mid : d) : d;
}
}  // namespace

extern "C" {
// logits (C, S) float32; nseg (C,) in 1..S; duration_ms (C,) >= 1; table (V, S) the video
// table's w * dist and table_row (C,) its row per candidate (-1: not mixed; table may be null
// when every row is -1), keep = 1 - w. Writes dist (C, S) and the per-candidate outputs.
void segint_score_heads(int64_t C, int64_t S, const float* logits, const int64_t* nseg,
                        const int64_t* duration_ms, double temperature, const double* table,
                        const int64_t* table_row, double keep, double* dist, int64_t* pred_slot,
                        double* expected_ms, double* completion, double* median_ms) {
  for (int64_t c = 0; c < C; ++c) {
    const float* l = logits + c * S;
    double* p = dist + c * S;
    const int64_t n = nseg[c];
    const int64_t last = n < S ? n : S - 1;  // outcomes 0..last
    for (int64_t j = 0; j <= last; ++j) p[j] = -(static_cast<double>(l[j]) / temperature);
    double m = p[0];
    for (int64_t j = 1; j <= last; ++j) m = p[j] > m ? p[j] : m;
    double sum = 0.0;
    for (int64_t j = 0; j <= last; ++j) {
      p[j] = std::exp(p[j] - m);
      sum += p[j];
    }
    for (int64_t j = 0; j <= last; ++j) p[j] /= sum;
    for (int64_t j = last + 1; j < S; ++j) p[j] = 0.0;
    if (table_row[c] >= 0) {
      const double* t = table + table_row[c] * S;
      for (int64_t j = 0; j < S; ++j) p[j] = p[j] * keep + t[j];
    }
    const double d = static_cast<double>(duration_ms[c]);
    const double nd = std::ceil(d / SEGMENT_MS);  // unclipped: may exceed S
    double mean = 0.0, watch = 0.0, cdf = 0.0;
    int64_t median = -1;
    for (int64_t j = 0; j < S; ++j) {
      mean += static_cast<double>(j) * p[j];
      watch += p[j] * slot_watch_ms(j, d, nd);
      cdf += p[j];
      if (median < 0 && cdf >= 0.5 - 1e-12) median = j;
    }
    if (median < 0) median = 0;  // as numpy's argmax of no hit
    pred_slot[c] = static_cast<int64_t>(std::floor(mean));
    expected_ms[c] = watch;
    completion[c] = n < S ? p[n] : 0.0;
    median_ms[c] = slot_watch_ms(median, d, nd);
  }
}
}
