# Cython declarations for replica.py (see setup.py): C-typed fields and
# locals for the compiled core.  The .py file stays the one definition of
# behaviour; these only say what type each field and local holds.

cimport cython

from servesim.core.events cimport EventLoop
from servesim.perf.steptime cimport StepTimeModel
from servesim.scheduler.batch_scheduler cimport BatchPlan, BatchScheduler, DecodeRun
from servesim.scheduler.sequence cimport Sequence


cdef class _Stretch:
    cdef public BatchPlan plan
    cdef public DecodeRun run
    cdef public double start_s
    cdef public list end_s
    cdef public long num_steps
    cdef public long token
    cdef public long num_waiting
    cdef public long _batch
    cdef public long _kv_base
    cdef public long _next_finish

    @cython.locals(ends=list, run=DecodeRun, finish_steps=list, finish_kv=list, j=long, stop=long,
                   end=double, batch=long, kv_base=long, nf=long, model=StepTimeModel)
    cpdef price(self, long count, object step_model, double horizon, double until_s=*)
    cpdef double event_time_s(self) except? -1.0


cdef class Replica:
    cdef public long index
    cdef public EventLoop loop
    cdef public BatchScheduler scheduler
    cdef public object step_model
    cdef public object _on_finished
    cdef public bint _stretch_enabled
    cdef public double _horizon
    cdef public double _sample_every
    cdef public double _next_sample
    cdef public object _sampler
    cdef public object _next_arrival
    cdef public bint _busy
    cdef public bint _wake_pending
    cdef public _Stretch _stretch
    cdef public long _outstanding
    cdef public bint _loads
    cdef public object cache_sampler
    cdef public object on_booked
    cdef public long num_steps
    cdef public double busy_time_s
    cdef public double busy_prefill_s
    cdef public long _step_token
    cdef public double _step_start
    cdef public bint down
    cdef public bint async_scheduling
    cdef public list _held
    cdef public list _held_at
    cdef public double _prev_start

    cpdef submit(self, Sequence seq, double now)
    @cython.locals(stretch=_Stretch, priced=long, last=long, started=long)
    cpdef long _kv_used_now(self) except? -1
    @cython.locals(count=long, stretch=_Stretch, now=double, ends=list, j=long)
    cpdef long _outstanding_now(self) except? -1
    @cython.locals(k=long)
    cpdef _release_held(self, double until_s)
    @cython.locals(plan=BatchPlan, compute=double)
    cpdef _start_step(self, double now)
    @cython.locals(run=DecodeRun, stretch=_Stretch)
    cpdef _start_decode(self, BatchPlan plan, double now)
    @cython.locals(stretch=_Stretch, ends=list, steps=long)
    cpdef _cut_stretch(self, double now)
    cpdef _finish(self, list finished, double now)
    @cython.locals(plan=BatchPlan, start=double)
    cpdef _on_step_done(self, double now, tuple payload)
    @cython.locals(stretch=_Stretch, steps=long)
    cpdef _on_stretch_done(self, double now, object _payload)
