# Cython declarations for batch_scheduler.py (see setup.py): C-typed fields
# and calls for the compiled core.  The .py file stays the one definition of
# behaviour; these only say what type each field and local holds.

cimport cython

from servesim.kvcache.manager cimport KVCacheManager
from servesim.perf.batch_shape cimport BatchShape
from servesim.scheduler.sequence cimport Sequence


cdef class BatchPlan:
    cdef public list seqs
    cdef public list num_new
    cdef public list preempted
    cdef public BatchShape shape
    cdef public bint is_pure_decode
    cdef public long num_group


cdef class DecodeRun:
    cdef public long max_steps
    cdef public long batch0
    cdef public long kv0
    cdef public list finish_steps
    cdef public list finish_seqs
    cdef public list finish_kv

    @cython.locals(total=long, f=long)
    cpdef long tokens_through(self, long steps) except? -1


cdef class BatchScheduler:
    cdef public object config
    cdef public KVCacheManager kv
    cdef public object waiting
    cdef public list running
    cdef public long _max_tokens
    cdef public long _max_seqs
    cdef public bint _chunked
    cdef public long num_preemptions
    cdef public long num_tokens_produced
    cdef public object prefix_cache
    cdef public object chunk_cache
    cdef public object adapters

    cpdef BatchPlan schedule(self, double now)
    @cython.locals(seq=Sequence, n=long, seqs=list, num_new=list, i=Py_ssize_t)
    cpdef list on_step_done(self, BatchPlan plan, double end_s)
    cpdef long _book(self, Sequence seq, long num_new, double end_s) except? -1
    cpdef DecodeRun decode_run(self, BatchPlan plan, long max_steps)
    cpdef list apply_decode_run(self, BatchPlan plan, DecodeRun run, list end_s)
    cpdef long run_blocks_used(self, BatchPlan plan, DecodeRun run, long num_steps) except? -1
    @cython.locals(seq=Sequence, n=long, kv=KVCacheManager, running=list, hit=long, attached=bint, reused=bint)
    cpdef _admit_waiting(self, double now, list seqs, list num_new, long budget)
    cpdef _retire(self, list finished)


@cython.locals(num_tokens=long, num_prefill=long, pairs=long, prefill_kv=long, decode_kv=long, seq=Sequence,
               q=long, c=long, num_seqs=long, i=Py_ssize_t)
cpdef BatchPlan make_plan(list seqs, list num_new, list preempted, long group=*, long group_kv_tokens=*)
