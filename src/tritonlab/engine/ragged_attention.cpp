// Ragged attention over the KV cache for the embedded engine's CPU build (attention.py builds and documents it).
//
// Each sequence attends over its own cached positions only: sequence b reads start_pos[b] cached keys of its slot
// plus the step's new keys up to the query's own position (causal). A padded batch would read every sequence up to
// the longest one's length; in-flight batching mixes a 200-token sequence with a 10-token one every step, and the
// padding was most of the attention's work. TensorRT-LLM's attention kernels read each sequence's own KV length the
// same way.
//
// Exposed as the C shim AOTInductor calls for the custom op tritonlab::ragged_attention (the name follows
// torch/_inductor/codegen/cpp_wrapper_cpu.py: aoti_torch_<device>_<op>); it uses only torch's stable C API
// (torch/csrc/inductor/aoti_torch/c/shim.h), so the compiled engine calls it directly, without torch's dispatcher.
//
//   q        [B, H, T, D]        float32   queries, rotary applied, not scaled
//   k, v     [B, KVH, T, D]      cache dtype  the step's new keys/values (not yet in the cache)
//   k_cache  [slots, KVH, S, D]  cache dtype  one layer of the cache (v_cache alike)
//   start_pos, slots [B]         int64     cached tokens of each sequence, and its cache slot
//   returns  [B, H, T, D]        float32
//
// Packed rows (T = 1): the runtime packs a step's tokens without padding, one row per token, as TensorRT-LLM does
// with remove_input_padding. A prompt then fills consecutive rows of one slot at consecutive positions, next to the
// running sequences' single new tokens, and a row also sees the new keys of the earlier rows of its own slot
// (they are not in the cache yet). A slot whose rows are not consecutive, or not at consecutive positions, fails.
#include <torch/csrc/inductor/aoti_torch/c/shim.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

inline float load(const float* p) { return *p; }

struct BF16 { uint16_t bits; };
struct F16 { uint16_t bits; };

inline float load(const BF16* p) {
  uint32_t word = static_cast<uint32_t>(p->bits) << 16;
  float out;
  std::memcpy(&out, &word, sizeof out);
  return out;
}

inline float load(const F16* p) {
  // IEEE half to float, subnormals included.
  uint32_t h = p->bits, sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, word;
  if (exp == 0x1f) {
    word = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    word = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    word = sign;
  } else {
    int shift = 0;
    while (!(mant & 0x400u)) { mant <<= 1; ++shift; }
    word = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mant & 0x3ffu) << 13);
  }
  float out;
  std::memcpy(&out, &word, sizeof out);
  return out;
}

struct View {  // sizes and strides (in elements) of one tensor argument
  int64_t dim = 0;
  const int64_t* size = nullptr;
  const int64_t* stride = nullptr;
  void* data = nullptr;
  int32_t dtype = -1;
};

bool view_of(AtenTensorHandle handle, int64_t dims, View* out) {
  if (aoti_torch_get_dim(handle, &out->dim) || out->dim != dims) return false;
  return !aoti_torch_get_sizes(handle, const_cast<int64_t**>(&out->size)) &&
         !aoti_torch_get_strides(handle, const_cast<int64_t**>(&out->stride)) &&
         !aoti_torch_get_data_ptr(handle, &out->data) && !aoti_torch_get_dtype(handle, &out->dtype);
}

int fail(const char* message) {
  std::fprintf(stderr, "tritonlab ragged_attention: %s\n", message);
  return AOTI_TORCH_FAILURE;
}

// Loads one key/value row as float32 (a no-op copy for float32 caches, a conversion for 16-bit ones).
template <typename T>
inline const float* row(const T* src, int64_t stride, int64_t D, float* buffer) {
  if constexpr (std::is_same_v<T, float>) {
    if (stride == 1) return src;
  }
  for (int64_t d = 0; d < D; ++d) buffer[d] = load(src + d * stride);
  return buffer;
}

template <typename T>
int attend(const View& q, const View& k, const View& v, const View& kc, const View& vc, const int64_t* start,
           const int64_t* slot, float* out) {
  const int64_t B = q.size[0], H = q.size[1], steps = q.size[2], D = q.size[3];
  const int64_t KVH = k.size[1], slots = kc.size[0], S = kc.size[2], groups = H / KVH;
  // first[b]: the first row of b's slot in this step (b itself unless packed rows share the slot).
  std::vector<int64_t> first(B), last_row(slots, -1);
  for (int64_t b = 0; b < B; ++b) {
    if (slot[b] < 0 || slot[b] >= slots || start[b] < 0 || start[b] + steps > S) return fail("slot or position out of range");
    first[b] = b;
    const int64_t previous = last_row[slot[b]];
    if (previous >= 0) {
      if (steps != 1 || previous != b - 1 || start[b] != start[b - 1] + 1)
        return fail("rows of one slot must be consecutive rows of one token each, at consecutive positions");
      first[b] = first[b - 1];
    }
    last_row[slot[b]] = b;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float* Q = static_cast<const float*>(q.data);
  const T *K = static_cast<const T*>(k.data), *V = static_cast<const T*>(v.data);
  const T *KC = static_cast<const T*>(kc.data), *VC = static_cast<const T*>(vc.data);
  int64_t work = 0;
  for (int64_t b = 0; b < B; ++b) work += (start[b] + steps) * steps;
  // Threads (torch's: torch.set_num_threads sets this OpenMP runtime too) once the work is worth waking them for,
  // about 10 us of it; a decode step of 16 sequences of ~80 tokens is ten times that.
#pragma omp parallel for collapse(2) schedule(static) if (work * H * D > (1 << 16))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t kh = 0; kh < KVH; ++kh) {
      // The `rows` = groups x steps queries that share this key/value head meet each key once: a key row is
      // loaded (and converted) once for all of them.
      // Keys: positions below `cached` from the cache, the rest new in this step (this row's own tokens, and for
      // packed rows the earlier rows of its slot); `own` is this row's first position.
      const int64_t own = start[b], cached = start[first[b]], keys = own + steps, rows = groups * steps;
      std::vector<float> query(rows * D), scores(rows * keys), buffer(D);
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t t = 0; t < steps; ++t)
          for (int64_t d = 0; d < D; ++d)
            query[(g * steps + t) * D + d] = Q[b * q.stride[0] + (kh * groups + g) * q.stride[1] + t * q.stride[2] + d * q.stride[3]] * scale;
      const T* kcache = KC + slot[b] * kc.stride[0] + kh * kc.stride[1];
      const T* vcache = VC + slot[b] * vc.stride[0] + kh * vc.stride[1];
      // New key j (>= cached): row first + (j - cached) for packed rows (T = 1), else step j - cached of row b.
      const int64_t new_row_stride = steps == 1 ? k.stride[0] : k.stride[2];
      const int64_t new_row_stride_v = steps == 1 ? v.stride[0] : v.stride[2];
      const T* knew = K + first[b] * k.stride[0] + kh * k.stride[1];
      const T* vnew = V + first[b] * v.stride[0] + kh * v.stride[1];
      for (int64_t j = 0; j < keys; ++j) {
        const float* key = j < cached ? row(kcache + j * kc.stride[2], kc.stride[3], D, buffer.data())
                                      : row(knew + (j - cached) * new_row_stride, k.stride[3], D, buffer.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float* qr = query.data() + r * D;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) dot += qr[d] * key[d];
          scores[r * keys + j] = dot;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* sr = scores.data() + r * keys;
        const int64_t visible = own + r % steps + 1;  // causal among the step's own tokens
        const float best = *std::max_element(sr, sr + visible);
        float total = 0.0f;
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < visible; ++j) total += (sr[j] = std::exp(sr[j] - best));
        const float inverse = 1.0f / total;
        for (int64_t j = 0; j < visible; ++j) sr[j] *= inverse;
        std::fill(sr + visible, sr + keys, 0.0f);
        float* orow = out + ((b * H + kh * groups + r / steps) * steps + r % steps) * D;
        std::fill(orow, orow + D, 0.0f);
      }
      for (int64_t j = 0; j < keys; ++j) {
        const float* value = j < cached ? row(vcache + j * vc.stride[2], vc.stride[3], D, buffer.data())
                                        : row(vnew + (j - cached) * new_row_stride_v, v.stride[3], D, buffer.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float p = scores[r * keys + j];
          if (p == 0.0f) continue;
          float* orow = out + ((b * H + kh * groups + r / steps) * steps + r % steps) * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) orow[d] += p * value[d];
        }
      }
    }
  }
  return AOTI_TORCH_SUCCESS;
}

}  // namespace

// The library's one exported symbol (built with -fvisibility=hidden): loaded with RTLD_GLOBAL so the compiled step
// finds it, nothing else of it may interpose on the symbols of libraries loaded after it.
extern "C" __attribute__((visibility("default"))) AOTITorchError aoti_torch_cpu_ragged_attention(AtenTensorHandle q, AtenTensorHandle k, AtenTensorHandle v,
                                                          AtenTensorHandle k_cache, AtenTensorHandle v_cache,
                                                          AtenTensorHandle start_pos, AtenTensorHandle slots,
                                                          AtenTensorHandle* ret0) {
  View Q, K, V, KC, VC, P, SL;
  if (!view_of(q, 4, &Q) || !view_of(k, 4, &K) || !view_of(v, 4, &V) || !view_of(k_cache, 4, &KC) ||
      !view_of(v_cache, 4, &VC) || !view_of(start_pos, 1, &P) || !view_of(slots, 1, &SL))
    return fail("expected q, k, v, k_cache, v_cache of 4 dimensions and start_pos, slots of 1");
  if (Q.dtype != aoti_torch_dtype_float32()) return fail("q must be float32");
  if (K.dtype != KC.dtype || V.dtype != KC.dtype || VC.dtype != KC.dtype) return fail("k, v and the caches must share one dtype");
  if (P.dtype != aoti_torch_dtype_int64() || SL.dtype != aoti_torch_dtype_int64()) return fail("start_pos and slots must be int64");
  if (P.stride[0] != 1 || SL.stride[0] != 1) return fail("start_pos and slots must be contiguous");
  if (K.size[1] == 0 || Q.size[1] % K.size[1] != 0) return fail("query heads must be a multiple of key/value heads");
  if (K.size[0] != Q.size[0] || K.size[2] != Q.size[2] || K.size[3] != Q.size[3] || KC.size[3] != Q.size[3] ||
      P.size[0] != Q.size[0] || SL.size[0] != Q.size[0] || V.size[1] != K.size[1] || KC.size[1] != K.size[1])
    return fail("shapes do not match: q [B,H,T,D], k/v [B,KVH,T,D], caches [slots,KVH,S,D], start_pos/slots [B]");
  const int64_t sizes[4] = {Q.size[0], Q.size[1], Q.size[2], Q.size[3]};
  const int64_t strides[4] = {Q.size[1] * Q.size[2] * Q.size[3], Q.size[2] * Q.size[3], Q.size[3], 1};
  AtenTensorHandle result = nullptr;
  if (aoti_torch_empty_strided(4, sizes, strides, aoti_torch_dtype_float32(), aoti_torch_device_type_cpu(), 0, &result))
    return fail("could not allocate the output");
  void* data = nullptr;
  aoti_torch_get_data_ptr(result, &data);
  const auto* start = static_cast<const int64_t*>(P.data);
  const auto* slot = static_cast<const int64_t*>(SL.data);
  auto* out = static_cast<float*>(data);
  int code;
  if (KC.dtype == aoti_torch_dtype_float32())
    code = attend<float>(Q, K, V, KC, VC, start, slot, out);
  else if (KC.dtype == aoti_torch_dtype_bfloat16())
    code = attend<BF16>(Q, K, V, KC, VC, start, slot, out);
  else if (KC.dtype == aoti_torch_dtype_float16())
    code = attend<F16>(Q, K, V, KC, VC, start, slot, out);
  else
    code = fail("the cache dtype must be float32, bfloat16 or float16");
  if (code != AOTI_TORCH_SUCCESS) {
    aoti_torch_delete_tensor_object(result);
    return code;
  }
  *ret0 = result;
  return AOTI_TORCH_SUCCESS;
}
