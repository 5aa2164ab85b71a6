// A scored request's preparation in one pass each (service.kernels.heads wraps them): every
// candidate's N and vocabulary row (service.ranker.Ranker.score's numpy steps), and the bucket
// plan of ragged scoring (service.ranker.bucket_plan: the same least cost, by the plain
// quadratic programme over the k <= S distinct needs).
#include <algorithm>
#include <cstdint>
#include <vector>

extern "C" {

// nseg[c] = clip(ceil(duration_ms[c] / 5 s), 1, S); idx[c] = 1 + the position of video_ids[c]
// in the sorted vocabulary (V raw ids), 0 when it is not there.
void segint_prepare(int64_t C, int64_t S, const int64_t* video_ids, const int64_t* duration_ms,
                    const int64_t* vocab, int64_t V, int64_t* nseg, int64_t* idx) {
  for (int64_t c = 0; c < C; ++c) {
    const int64_t d = duration_ms[c];
    const int64_t n = d > 0 ? (d + 4999) / 5000 : 0;  // d <= 0: clipped to 1 below either way
    nseg[c] = n < 1 ? 1 : (n > S ? S : n);
    const int64_t* at = std::lower_bound(vocab, vocab + V, video_ids[c]);
    idx[c] = (at != vocab + V && *at == video_ids[c]) ? (at - vocab) + 1 : 0;
  }
}

// Candidates (nseg in 1..S) in order of their need min(N + 1, S) (stable) and cut into runs of
// least total cost sum(overhead + rows * T); runs[3 i .. 3 i + 2] = (start, stop, T) in that
// order. Returns the number of runs (<= S).
int64_t segint_bucket_plan(int64_t C, int64_t S, const int64_t* nseg, int64_t overhead,
                           int64_t* order, int64_t* runs) {
  std::vector<int64_t> count(S + 1, 0);
  for (int64_t c = 0; c < C; ++c) ++count[std::min(nseg[c] + 1, S)];
  std::vector<int64_t> start(S + 1, 0);  // counting sort: stable
  for (int64_t w = 1; w <= S; ++w) start[w] = start[w - 1] + count[w - 1];
  for (int64_t c = 0; c < C; ++c) order[start[std::min(nseg[c] + 1, S)]++] = c;
  std::vector<int64_t> width, before{0};
  for (int64_t w = 0; w <= S; ++w)
    if (count[w]) {
      width.push_back(w);
      before.push_back(before.back() + count[w]);
    }
  const int64_t k = static_cast<int64_t>(width.size());
  std::vector<int64_t> best(k + 1, 0), cut(k + 1, 0);
  for (int64_t i = 1; i <= k; ++i) {
    best[i] = INT64_MAX;
    for (int64_t j = 0; j < i; ++j) {
      const int64_t cost = best[j] + overhead + (before[i] - before[j]) * width[i - 1];
      if (cost < best[i]) best[i] = cost, cut[i] = j;
    }
  }
  int64_t n = 0;
  for (int64_t i = k; i > 0; i = cut[i]) ++n;
  int64_t r = n;
  for (int64_t i = k; i > 0; i = cut[i]) {
    --r;
    runs[3 * r] = before[cut[i]];
    runs[3 * r + 1] = before[i];
    runs[3 * r + 2] = width[i - 1];
  }
  return n;
}
}
