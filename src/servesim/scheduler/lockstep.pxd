# Cython declarations for lockstep.py (see setup.py): C-typed fields and
# locals for the compiled core.  The .py file stays the one definition of
# behaviour; these only say what type each field and local holds.

cimport cython

from servesim.kvcache.manager cimport KVCacheManager
from servesim.perf.batch_shape cimport BatchShape
from servesim.scheduler.batch_scheduler cimport BatchPlan, BatchScheduler, DecodeRun
from servesim.scheduler.sequence cimport Sequence
from servesim.scheduler.suffix_max cimport SuffixMax


cdef class LockstepScheduler(BatchScheduler):
    cdef public long step_index
    cdef public dict _members
    cdef public long _context
    cdef public list _finish_order
    cdef public long _block
    cdef public list _phases
    cdef public SuffixMax _gaps
    cdef public double _last_end_s
    cdef public long _pushes

    @cython.locals(members=dict, running=list, budget=long, due=list, kv=KVCacheManager, blocks=long,
                   seq=Sequence, n=long, group=long, tail_seqs=list, tail_new=list, i=Py_ssize_t)
    cpdef BatchPlan schedule(self, double now)
    @cython.locals(g=long, seq=Sequence, n=long, booked=long, finished=list, seqs=list, num_new=list, i=Py_ssize_t)
    cpdef list on_step_done(self, BatchPlan plan, double end_s)
    @cython.locals(shape=BatchShape, g=long, cap=long, steps=long, finishing=list, seqs=list, finish_steps=list,
                   entry=tuple, step=long)
    cpdef DecodeRun decode_run(self, BatchPlan plan, long max_steps)
    @cython.locals(g=long, kv=list, seq=Sequence)
    cpdef list _kv_now(self, list seqs)
    @cython.locals(order=list, found=list, i=Py_ssize_t, entry=tuple, seq=Sequence)
    cpdef list _finishing_through(self, long last_step)
    @cython.locals(g=long, free=long, lo=long, hi=long, mid=long)
    cpdef long _kv_limit(self, long cap) except? -1
    @cython.locals(steps=long, g=long, last=long, previous_end=double, j=long, seq=Sequence,
                   finished=list, largest=list, finish_steps=list, finish_seqs=list, i=Py_ssize_t)
    cpdef list apply_decode_run(self, BatchPlan plan, DecodeRun run, list end_s)
    @cython.locals(join=long, epoch=long, last_step=long, need=long)
    cpdef _join(self, Sequence seq)
    @cython.locals(g=long, at=long, done=long)
    cpdef _leave(self, Sequence seq, object at_step=*, object last_end_s=*, double run_gap=*)
    @cython.locals(order=list, finished=list, count=Py_ssize_t, i=Py_ssize_t, entry=tuple, seq=Sequence)
    cpdef list _pop_finished(self, long last_step)
    @cython.locals(bucket=list, live=list, epoch=long, seq=Sequence)
    cpdef list _live(self, long phase)
    @cython.locals(due=list, seq=Sequence)
    cpdef list _due_at(self, long step)
    cpdef _grant_block(self, Sequence seq)
    @cython.locals(first=long, block=long, kv=KVCacheManager, p=long, epoch=long, seq=Sequence, end=long)
    cpdef _grant_due_through(self, long last_step)
    @cython.locals(block=long, total=long, bucket=list, epoch=long, seq=Sequence, end=long)
    cpdef long _blocks_needed(self, long first_step, long last_step) except? -1
    @cython.locals(step=long, block=long, used=long, bucket=list, epoch=long, seq=Sequence, done=list)
    cpdef long run_blocks_used(self, BatchPlan plan, DecodeRun run, long num_steps) except? -1
    cpdef _push_gap(self, long step, double gap)
    @cython.locals(running=list, i=Py_ssize_t)
    cpdef _retire(self, list finished)


@cython.locals(out=list, largest=double, prev=double, end=double, gap=double)
cpdef list _running_largest_gap(double previous_end_s, list end_s)

cpdef long _finish_step(Sequence seq) except? -1

@cython.locals(seq=Sequence)
cpdef bint _any_member(object seqs) except -1
