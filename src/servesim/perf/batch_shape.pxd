# Cython declarations for batch_shape.py (see setup.py).

cdef class BatchShape:
    cdef public long num_tokens
    cdef public long num_seqs
    cdef public long num_prefill_seqs
    cdef public long prefill_attn_pairs
    cdef public long prefill_kv_tokens
    cdef public long num_decode_seqs
    cdef public long decode_kv_tokens
