// The default /score candidates array in one pass (service.kernels.heads wraps it): the same
// bytes as service.schemas.CandidateScore.json_array, which gives orjson one column at a time.
// Floats are float32 values in orjson's form: the shortest round-trip digits (std::to_chars),
// decimal when the point falls at most 13 digits right or 5 zeros left of them, else
// d.ddde±x; whole numbers end in ".0"; NaN and infinities are null.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

char* put(char* p, const char* s) {
  const size_t n = std::strlen(s);
  std::memcpy(p, s, n);
  return p + n;
}

char* put_int(char* p, int64_t v) { return std::to_chars(p, p + 24, v).ptr; }

}  // namespace

extern "C" {

// Writes float32 ``v`` as orjson does at ``out`` (at least 32 bytes); returns its length.
int64_t segint_format_f32(float v, char* out) {
  char* p = out;
  if (!std::isfinite(v)) return put(p, "null") - out;
  if (std::signbit(v)) {
    *p++ = '-';
    v = -v;
  }
  if (v == 0.0f) return put(p, "0.0") - out;
  char sci[32];
  const char* end = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific).ptr;
  char digits[16];
  int n = 0;
  const char* q = sci;
  for (; q < end && *q != 'e'; ++q)
    if (*q != '.') digits[n++] = *q;
  int exp10 = 0;
  std::from_chars(q + 1 + (q[1] == '+'), end, exp10);
  const int kk = exp10 + 1;  // the decimal point's place after the first digit's
  if (kk >= n && kk <= 13) {  // a whole number: digits, zeros, ".0"
    std::memcpy(p, digits, n);
    p += n;
    for (int i = n; i < kk; ++i) *p++ = '0';
    p = put(p, ".0");
  } else if (kk > 0 && kk <= 13) {  // the point inside the digits
    std::memcpy(p, digits, kk);
    p += kk;
    *p++ = '.';
    std::memcpy(p, digits + kk, n - kk);
    p += n - kk;
  } else if (kk <= 0 && kk > -6) {  // 0.00000ddd
    p = put(p, "0.");
    for (int i = kk; i < 0; ++i) *p++ = '0';
    std::memcpy(p, digits, n);
    p += n;
  } else {  // d.ddde-x, de+x
    *p++ = digits[0];
    if (n > 1) {
      *p++ = '.';
      std::memcpy(p, digits + 1, n - 1);
      p += n - 1;
    }
    *p++ = 'e';
    if (exp10 >= 0) *p++ = '+';
    p = put_int(p, exp10);
  }
  return p - out;
}

// The JSON array of C candidate objects (CandidateScore's default fields; ctr when not null)
// at ``out``, which holds at least segint_candidates_bound(C) bytes; returns its length.
int64_t segint_candidates_json(int64_t C, const int64_t* video_id, const uint8_t* video_unknown,
                               const int64_t* n_segments, const int64_t* predicted_exit_slot,
                               const double* completion, const double* expected_ms,
                               const double* median_ms, const double* ctr, char* out) {
  char* p = out;
  *p++ = '[';
  for (int64_t c = 0; c < C; ++c) {
    if (c) *p++ = ',';
    p = put(p, "{\"video_id\":");
    p = put_int(p, video_id[c]);
    p = put(p, video_unknown[c] ? ",\"video_unknown\":true" : ",\"video_unknown\":false");
    p = put(p, ",\"n_segments\":");
    p = put_int(p, n_segments[c]);
    p = put(p, ",\"predicted_exit_slot\":");
    p = put_int(p, predicted_exit_slot[c]);
    p = put(p, ",\"skip_probability\":");
    p += segint_format_f32(static_cast<float>(1.0 - completion[c]), p);
    p = put(p, ",\"expected_watch_ms\":");
    p = put_int(p, static_cast<int64_t>(std::nearbyint(expected_ms[c])));
    p = put(p, ",\"median_watch_ms\":");
    p = put_int(p, static_cast<int64_t>(std::nearbyint(median_ms[c])));
    p = put(p, ",\"completion_probability\":");
    p += segint_format_f32(static_cast<float>(completion[c]), p);
    if (ctr != nullptr) {
      p = put(p, ",\"ctr\":");
      p += segint_format_f32(static_cast<float>(ctr[c]), p);
    }
    *p++ = '}';
  }
  *p++ = ']';
  return p - out;
}

// Bytes segint_candidates_json may write for C candidates.
int64_t segint_candidates_bound(int64_t C) { return 2 + C * 400; }
}
