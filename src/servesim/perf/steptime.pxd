# Cython declarations for steptime.py (see setup.py): C-typed fields and
# locals for the compiled core.  The .py file stays the one definition of
# the arithmetic; a C double does each operation exactly as a Python float
# (setup.py turns off fused multiply-adds, which would round differently).

cimport cython

from servesim.perf.batch_shape cimport BatchShape


cdef class StepTimeModel:
    cdef public object model
    cdef public object hardware
    cdef public object params
    cdef public long tensor_parallel
    cdef public long pipeline_parallel
    cdef public bint cuda_graphs
    cdef public bint expert_parallel
    cdef public long prefill_graph_tokens
    cdef public double _dense_s_per_token
    cdef public double _dense_fixed_s
    cdef public double _dense_weight_s
    cdef public bint _moe
    cdef public double _num_experts
    cdef public double _expert_miss
    cdef public double _expert_s_per_token
    cdef public double _expert_fixed_s
    cdef public double _expert_weight_s_per_expert
    cdef public double _lm_s_per_seq
    cdef public double _lm_fixed_s
    cdef public double _lm_weight_s
    cdef public double _elementwise_s_per_token
    cdef public double _pair_s
    cdef public double _prefill_kv_s
    cdef public double _decode_kv_s
    cdef public double _comm_s_per_token
    cdef public double _comm_fixed_s
    cdef public double _fixed_s
    cdef public double _gpu_overhead_s
    cdef public double _graphed_overhead_s
    cdef public double _eager_base_s
    cdef public double _eager_per_call_s
    cdef public double _exposed
    cdef public dict _decode_parts
    cdef public bint piecewise
    cdef public bint async_scheduling
    cdef public long max_graph_tokens
    cdef public list _pad
    cdef public double _decode_seq_s
    cdef public double _piecewise_gpu_s
    cdef public double _piecewise_launch_s
    cdef public double _host_s
    cdef public double _host_per_seq_s
    cdef public double _prefill_half

    @cython.locals(t=long, gemm=double, touched=double, routed=double, read=double, head=double, work=double,
                   pairs=double, ctx=double, cpu=double, gpu=double, overhead=double)
    cpdef double time_s(self, BatchShape shape) except? -1.0
    @cython.locals(n=long, work=double, comm=double, total=double, seqs=double, gpu=double, gpu_fixed=double, cpu=double, launch=double)
    cpdef double decode_time_s(self, long num_decode_seqs, long decode_kv_tokens) except? -1.0
    @cython.locals(cpu=double, gpu=double)
    cpdef double _eager_overhead_s(self, double work, long calls) except? -1.0

cpdef double _combine(double gpu, double host, double launch, bint overlapped)
