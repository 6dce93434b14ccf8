// y = x W.T for W kept in the GGUF's own blocks (32 weights each), for a few rows of x (one decode step).
//
// Q4_1: w = d * q + m with q in 0..15 (4 bits) and per-block d, m; Q8_0: w = d * q with q in -128..127.
// Each weight is rebuilt EXACTLY as the float32 de-quantisation computes it (d * q is exact in float32 for an
// fp16 d, so the single rounding is the + m), then multiplied into x as a float32 product would: only the order
// of the sums differs from a float32 matrix product.
//
// x: (rows, in) float32, contiguous; quants: (out, in / 32 * bytes per block); scales / mins: (out, in / 32)
// float32. With `threads` > 1 the output rows are shared with helper threads of our own (`Helpers` below): each
// output is still one thread's sum, so the result is the same bit for bit.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>

#include <pthread.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kBlock = 32;
constexpr int kMaxRows = 8;  // rows of x per pass: the accumulators stay in registers

#if defined(__AVX512F__)
// One output row o for `Rows` rows of x.
template <int Rows>
void q4_1_row(const float* x, int64_t in, const uint8_t* quants, const float* scales, const float* mins,
              float* y, int64_t out, int64_t o) {
  const int64_t blocks = in / kBlock;
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const uint8_t* q = quants + o * blocks * 16;
  const float* d = scales + o * blocks;
  const float* m = mins + o * blocks;
  __m512 low[Rows], high[Rows];
  for (int r = 0; r < Rows; ++r) low[r] = high[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    // the block's 16 possible weights, d * k + m, and a lookup by each 4-bit code
    const __m512 table = _mm512_add_ps(_mm512_mul_ps(iota, _mm512_set1_ps(d[b])), _mm512_set1_ps(m[b]));
    const __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 16)));
    const __m512 first = _mm512_permutexvar_ps(codes, table);  // uses the low 4 bits: elements 0..15
    const __m512 second = _mm512_permutexvar_ps(_mm512_srli_epi32(codes, 4), table);  // elements 16..31
    for (int r = 0; r < Rows; ++r) {
      const float* xb = x + r * in + b * kBlock;
      low[r] = _mm512_fmadd_ps(first, _mm512_loadu_ps(xb), low[r]);
      high[r] = _mm512_fmadd_ps(second, _mm512_loadu_ps(xb + 16), high[r]);
    }
  }
  for (int r = 0; r < Rows; ++r) y[r * out + o] = _mm512_reduce_add_ps(_mm512_add_ps(low[r], high[r]));
}

template <int Rows>
void q8_0_row(const float* x, int64_t in, const int8_t* quants, const float* scales, float* y, int64_t out,
              int64_t o) {
  const int64_t blocks = in / kBlock;
  const int8_t* q = quants + o * blocks * kBlock;
  const float* d = scales + o * blocks;
  __m512 low[Rows], high[Rows];
  for (int r = 0; r < Rows; ++r) low[r] = high[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512 scale = _mm512_set1_ps(d[b]);
    const __m512 first = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * kBlock)))), scale);
    const __m512 second = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * kBlock + 16)))), scale);
    for (int r = 0; r < Rows; ++r) {
      const float* xb = x + r * in + b * kBlock;
      low[r] = _mm512_fmadd_ps(first, _mm512_loadu_ps(xb), low[r]);
      high[r] = _mm512_fmadd_ps(second, _mm512_loadu_ps(xb + 16), high[r]);
    }
  }
  for (int r = 0; r < Rows; ++r) y[r * out + o] = _mm512_reduce_add_ps(_mm512_add_ps(low[r], high[r]));
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2: 8 weights at a time, each d * q + m by one FMA (d * q is exact, so the one rounding is the one of + m).
inline float sum8(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}

// Independent sums per row of x: an FMA waits ~4 cycles for its accumulator, so one or two rows on two chains
// leave the FMA units idle; four chains keep them busy (with more rows, their own chains do, and registers run out).
template <int Rows>
constexpr int kChains = Rows <= 2 ? 4 : 2;

template <int Rows>
inline __m256 chains_sum(const __m256* chains) {
  __m256 sum = _mm256_add_ps(chains[0], chains[1]);
  if constexpr (kChains<Rows> == 4) sum = _mm256_add_ps(sum, _mm256_add_ps(chains[2], chains[3]));
  return sum;
}

// The 8 codes in the low 8 bytes of `bytes`, as floats.
inline __m256 codes8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }

template <int Rows>
void q4_1_row(const float* x, int64_t in, const uint8_t* quants, const float* scales, const float* mins,
              float* y, int64_t out, int64_t o) {
  const int64_t blocks = in / kBlock;
  const uint8_t* q = quants + o * blocks * 16;
  const __m128i low_nibble = _mm_set1_epi8(15);
  __m256 acc[Rows][kChains<Rows>];
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < kChains<Rows>; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256 d = _mm256_set1_ps(scales[o * blocks + b]), m = _mm256_set1_ps(mins[o * blocks + b]);
    // the block's 32 codes in registers: weights 0..15 are the low nibbles, 16..31 the high ones (a round trip
    // through memory would stall on store forwarding, which a one-row product cannot hide)
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 16));
    const __m128i low = _mm_and_si128(packed, low_nibble), high = _mm_and_si128(_mm_srli_epi16(packed, 4), low_nibble);
    const __m128i codes[4] = {low, _mm_unpackhi_epi64(low, low), high, _mm_unpackhi_epi64(high, high)};
    for (int part = 0; part < 4; ++part) {
      const __m256 w = _mm256_fmadd_ps(codes8(codes[part]), d, m);
      for (int r = 0; r < Rows; ++r) {
        __m256& chain = acc[r][part % kChains<Rows>];
        chain = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * in + b * kBlock + 8 * part), chain);
      }
    }
  }
  for (int r = 0; r < Rows; ++r) y[r * out + o] = sum8(chains_sum<Rows>(acc[r]));
}

template <int Rows>
void q8_0_row(const float* x, int64_t in, const int8_t* quants, const float* scales, float* y, int64_t out,
              int64_t o) {
  const int64_t blocks = in / kBlock;
  const int8_t* q = quants + o * blocks * kBlock;
  __m256 acc[Rows][kChains<Rows>];
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < kChains<Rows>; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256 d = _mm256_set1_ps(scales[o * blocks + b]);
    for (int part = 0; part < 4; ++part) {
      const __m256 w = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + b * kBlock + 8 * part)))), d);
      for (int r = 0; r < Rows; ++r) {
        __m256& chain = acc[r][part % kChains<Rows>];
        chain = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * in + b * kBlock + 8 * part), chain);
      }
    }
  }
  for (int r = 0; r < Rows; ++r) y[r * out + o] = sum8(chains_sum<Rows>(acc[r]));
}
#else
// Portable: the same weights, summed in plain order (~10x slower than float32 here: `vectorised()` says false and
// the writer then decodes from float32).
template <int Rows>
void q4_1_row(const float* x, int64_t in, const uint8_t* quants, const float* scales, const float* mins,
              float* y, int64_t out, int64_t o) {
  const int64_t blocks = in / kBlock;
  for (int r = 0; r < Rows; ++r) {
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* q = quants + (o * blocks + b) * 16;
      const float d = scales[o * blocks + b], m = mins[o * blocks + b];
      const float* xb = x + r * in + b * kBlock;
      for (int j = 0; j < 16; ++j) {
        sum += (d * static_cast<float>(q[j] & 15) + m) * xb[j];
        sum += (d * static_cast<float>(q[j] >> 4) + m) * xb[j + 16];
      }
    }
    y[r * out + o] = sum;
  }
}

template <int Rows>
void q8_0_row(const float* x, int64_t in, const int8_t* quants, const float* scales, float* y, int64_t out,
              int64_t o) {
  const int64_t blocks = in / kBlock;
  for (int r = 0; r < Rows; ++r) {
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) {
      const int8_t* q = quants + (o * blocks + b) * kBlock;
      const float d = scales[o * blocks + b];
      for (int j = 0; j < kBlock; ++j) sum += (d * static_cast<float>(q[j])) * x[r * in + b * kBlock + j];
    }
    y[r * out + o] = sum;
  }
}
#endif

// Helper threads that take chunks of a product's output rows beside the calling thread.
//
// Why not torch's own threads (at::parallel_for, OpenMP): the action server writes replies from several Python
// threads, and each thread that starts OpenMP work gets a team of its own; once a process has more OpenMP threads
// than cores, libgomp stops letting idle ones spin and every product waits for a sleeping thread to wake (a decode
// step measured 16 -> 31 ms). These helpers spin for a short while after each product (a decode step's next product
// follows within microseconds), then sleep until the next one.
//
// A product never waits for a helper that has not joined it: the caller claims chunks too, closes the job when none
// are left, and waits only for helpers already inside (seq_cst on both sides: a helper either sees the job closed,
// or the caller sees the helper inside). So a helper that lost its core costs at most the chunk it holds.
class Helpers {
 public:
  using Body = std::function<void(int64_t, int64_t)>;

  // body(begin, end) over [0, out) in chunks of `chunk`, on the caller and up to `threads` - 1 helpers.
  void run(int64_t out, int64_t chunk, int threads, const Body& body) {
    const int helpers = std::min<int>(threads - 1, kMostHelpers);
    std::unique_lock<std::mutex> one_product(busy_, std::try_to_lock);  // another thread's product holds them:
    if (helpers < 1 || out <= chunk || !one_product.owns_lock()) {      // this one runs on its own thread
      body(0, out);
      return;
    }
    if (!start(helpers)) {  // no thread to be had (a process limit): this product, and the next, run alone
      body(0, out);
      return;
    }
    wanted_ = helpers;
    body_ = &body;
    out_ = out;
    chunk_ = chunk;
    next_.store(0, std::memory_order_relaxed);
    const uint64_t job = ++job_count_;
    open_.store(job, std::memory_order_seq_cst);
    posted_.store(job, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_);
      wake_.notify_all();
    }
    work();
    open_.store(0, std::memory_order_seq_cst);  // no helper joins from here on
    for (int h = 0; h < started_; ++h)
      while (inside_[h].load(std::memory_order_seq_cst) == job) pause();
  }

  // Output rows the helpers have computed since the process began (a test's evidence that they take part).
  int64_t helped() const { return helped_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kMostHelpers = 15;
  static constexpr auto kSpin = std::chrono::milliseconds(2);  // then sleep until the next product

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  void work(bool helper = false) {
    for (;;) {
      const int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (begin >= out_) return;
      const int64_t end = std::min(out_, begin + chunk_);
      (*body_)(begin, end);
      if (helper) helped_.fetch_add(end - begin, std::memory_order_relaxed);
    }
  }

  // Whether the helpers a product asks for are running (started now if not: they live as long as the process,
  // detached, never joined at exit).
  bool start(int helpers) {
    while (started_ < helpers) {
      const int h = started_;
      try {
        std::thread([this, h] { loop(h); }).detach();
      } catch (const std::system_error&) {
        return false;
      }
      ++started_;
    }
    return true;
  }

  void loop(int h) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t job = wait_for_job(seen);
      seen = job;
      inside_[h].store(job, std::memory_order_seq_cst);
      // a closed job: the caller finished it alone; helpers beyond the ones this product asked for sit it out
      if (open_.load(std::memory_order_seq_cst) == job && h < wanted_) work(true);
      inside_[h].store(0, std::memory_order_seq_cst);
    }
  }

  uint64_t wait_for_job(uint64_t seen) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (int spins = 0;; ++spins) {
      const uint64_t job = posted_.load(std::memory_order_seq_cst);
      if (job != seen) return job;
      pause();
      if ((spins & 255) == 255 && std::chrono::steady_clock::now() > until) break;
    }
    std::unique_lock<std::mutex> lock(sleep_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lock, [&] { return posted_.load(std::memory_order_seq_cst) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    return posted_.load(std::memory_order_seq_cst);
  }

  std::mutex busy_, sleep_;
  std::condition_variable wake_;
  std::atomic<uint64_t> posted_{0}, open_{0};
  std::atomic<uint64_t> inside_[kMostHelpers] = {};
  std::atomic<int> sleepers_{0};
  std::atomic<int64_t> next_{0}, helped_{0};
  const Body* body_ = nullptr;
  int64_t out_ = 0, chunk_ = 1;
  int wanted_ = 0;  // helpers this product uses (written before the job is posted, read after)
  uint64_t job_count_ = 0;
  int started_ = 0;
};

Helpers* shared_helpers = nullptr;  // never destroyed: its threads may still be waiting at exit

Helpers& helpers() {
  static std::once_flag made;
  std::call_once(made, [] {
    shared_helpers = new Helpers();
    // a forked child has none of the threads (and maybe a mutex a thread held): it starts afresh
    pthread_atfork(nullptr, nullptr, [] { shared_helpers = new Helpers(); });
  });
  return *shared_helpers;
}

template <typename RowFn>
void for_each_row(int64_t out, int threads, RowFn row) {
  // chunks of at least 16 rows, ~8 per thread: small enough that a helper that lost its core holds back little
  const int64_t chunk = std::max<int64_t>(16, out / (8 * std::max(threads, 1)));
  helpers().run(out, chunk, threads, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) row(o);
  });
}

template <int Rows>
void q4_1_pass(const float* x, int64_t in, const uint8_t* q, const float* d, const float* m, float* y, int64_t out,
               int threads) {
  for_each_row(out, threads, [&](int64_t o) { q4_1_row<Rows>(x, in, q, d, m, y, out, o); });
}

template <int Rows>
void q8_0_pass(const float* x, int64_t in, const int8_t* q, const float* d, float* y, int64_t out, int threads) {
  for_each_row(out, threads, [&](int64_t o) { q8_0_row<Rows>(x, in, q, d, y, out, o); });
}

void check(const torch::Tensor& x, const torch::Tensor& scales, int64_t quant_bytes_per_block,
           const torch::Tensor& quants) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x: (rows, in) float32");
  TORCH_CHECK(x.size(1) % kBlock == 0, "in must be a multiple of 32");
  TORCH_CHECK(scales.dim() == 2 && scales.size(1) == x.size(1) / kBlock && scales.is_contiguous(), "scales shape");
  TORCH_CHECK(quants.is_contiguous() && quants.numel() == scales.numel() * quant_bytes_per_block, "quants shape");
}

// Calls pass<R>(x rows [start, start + R)) for chunks of at most kMaxRows rows.
#define RSFT_BY_ROW_CHUNKS(PASS, ...)                                                    \
  const int threads_ = static_cast<int>(std::clamp<int64_t>(threads, 1, 64));          \
  for (int64_t start = 0; start < rows; start += kMaxRows) {                              \
    const int64_t n = std::min<int64_t>(kMaxRows, rows - start);                         \
    const float* xs = x.data_ptr<float>() + start * in;                                   \
    float* ys = y.data_ptr<float>() + start * out;                                        \
    switch (n) {                                                                          \
      case 1: PASS<1>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 2: PASS<2>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 3: PASS<3>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 4: PASS<4>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 5: PASS<5>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 6: PASS<6>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      case 7: PASS<7>(xs, in, __VA_ARGS__, ys, out, threads_); break;                      \
      default: PASS<8>(xs, in, __VA_ARGS__, ys, out, threads_); break;                     \
    }                                                                                     \
  }

torch::Tensor q4_1_matmul(torch::Tensor x, torch::Tensor quants, torch::Tensor scales, torch::Tensor mins,
                          int64_t threads) {
  check(x, scales, 16, quants);
  TORCH_CHECK(mins.sizes() == scales.sizes() && mins.is_contiguous(), "mins shape");
  const int64_t rows = x.size(0), in = x.size(1), out = scales.size(0);
  auto y = torch::empty({rows, out}, x.options());
  const uint8_t* q = quants.data_ptr<uint8_t>();
  const float* d = scales.data_ptr<float>();
  const float* m = mins.data_ptr<float>();
  RSFT_BY_ROW_CHUNKS(q4_1_pass, q, d, m)
  return y;
}

torch::Tensor q8_0_matmul(torch::Tensor x, torch::Tensor quants, torch::Tensor scales, int64_t threads) {
  check(x, scales, kBlock, quants);
  const int64_t rows = x.size(0), in = x.size(1), out = scales.size(0);
  auto y = torch::empty({rows, out}, x.options());
  const int8_t* q = quants.data_ptr<int8_t>();
  const float* d = scales.data_ptr<float>();
  RSFT_BY_ROW_CHUNKS(q8_0_pass, q, d)
  return y;
}

int64_t helped_rows() { return helpers().helped(); }

bool vectorised() {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  return true;
#else
  return false;
#endif
}

// W (out, in) float32, each weight computed as the products above compute it: checked against the model's weights.
torch::Tensor dequantise(torch::Tensor quants, torch::Tensor scales, c10::optional<torch::Tensor> mins) {
  TORCH_CHECK(scales.dim() == 2 && scales.is_contiguous() && quants.is_contiguous(), "blocks layout");
  const int64_t out = scales.size(0), blocks = scales.size(1), count = out * blocks;
  auto w = torch::empty({out, blocks * kBlock}, scales.options());
  float* dst = w.data_ptr<float>();
  const float* d = scales.data_ptr<float>();
  if (mins.has_value()) {
    TORCH_CHECK(quants.numel() == count * 16 && mins->sizes() == scales.sizes(), "Q4_1 blocks shape");
    const uint8_t* q = quants.data_ptr<uint8_t>();
    const float* m = mins->data_ptr<float>();
    at::parallel_for(0, count, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int j = 0; j < 16; ++j) {
          dst[b * kBlock + j] = d[b] * static_cast<float>(q[b * 16 + j] & 15) + m[b];
          dst[b * kBlock + j + 16] = d[b] * static_cast<float>(q[b * 16 + j] >> 4) + m[b];
        }
    });
  } else {
    TORCH_CHECK(quants.numel() == count * kBlock, "Q8_0 blocks shape");
    const int8_t* q = quants.data_ptr<int8_t>();
    at::parallel_for(0, count, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int j = 0; j < kBlock; ++j) dst[b * kBlock + j] = d[b] * static_cast<float>(q[b * kBlock + j]);
    });
  }
  return w;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("q4_1_matmul", &q4_1_matmul, "x @ W.T for W in Q4_1 blocks, on `threads` threads");
  module.def("q8_0_matmul", &q8_0_matmul, "x @ W.T for W in Q8_0 blocks, on `threads` threads");
  module.def("helped_rows", &helped_rows, "output rows computed by helper threads so far");
  module.def("vectorised", &vectorised, "built with AVX-512 or AVX2+FMA (else slower than float32)");
  module.def("dequantise", &dequantise, "W from Q4_1 (mins given) or Q8_0 blocks");
}
