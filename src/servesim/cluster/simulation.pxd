# Cython declarations for simulation.py (see setup.py): C-typed fields and
# locals for the compiled core.  The .py file stays the one definition of
# behaviour; these only say what type each field and local holds.

cimport cython

from servesim.cluster.replica cimport Replica
from servesim.core.events cimport EventLoop
from servesim.scheduler.sequence cimport Sequence


cdef class Simulation:
    cdef public object workload
    cdef public object setup
    cdef public object router
    cdef public object horizon_s
    cdef public double frontend_latency_s
    cdef public EventLoop loop
    cdef public object progress
    cdef public object timeseries
    cdef public list replicas
    # Result columns (array.array): written one value at a time.
    cdef public object _replica
    cdef public object _status
    cdef public object _reason
    cdef public object _first_sched
    cdef public object _first_token
    cdef public object _finish
    cdef public object _max_itl
    cdef public object _preempt
    cdef public object _generated
    cdef public object _cached
    cdef public long _num_arrived
    cdef public long _num_done
    cdef public double _next_arrival_s
    cdef public long _chunk_start
    cdef public tuple _chunk
    cdef public long _kv_token_capacity
    cdef public long _fits_everywhere
    cdef public double _view_delay_s
    cdef public list _views
    cdef public double _views_taken_s
    cdef public double _hold_short_s
    cdef public long _short_prompt_tokens
    cdef public list _held
    cdef public object _pd
    cdef public long _num_prefill
    cdef public list _entry
    cdef public list _links
    cdef public dict _in_transfer
    cdef public object _least_loaded
    cdef public bint _offload
    cdef public list _roles
    cdef public list _prefill_pool
    cdef public list _decode_pool
    cdef public bint _control
    cdef public double _last_look_s
    cdef public object _switching
    cdef public double _switch_ready_s
    cdef public list role_switches
    cdef public list _setups
    cdef public list _fits_on
    cdef public bint _hetero
    cdef public list pool_profiles
    cdef public bint _paired
    cdef public dict _shared_kv
    cdef public object _semi_control
    cdef public list semi_pd_splits
    cdef public bint _closed
    cdef public object _successor
    cdef public list _releases
    cdef public object _arrival
    cdef public object pinning
    cdef public object kv_series
    cdef public object _adapter_ids
    cdef public long _longest_model_len
    cdef public object fleet
    cdef public object disturbances
    cdef public object front

    @cython.locals(i=long, k=long, seq=Sequence, prompt=list, output=list, priority=list, arrival=list, r=long,
                   reason=str, session=object, prefix=object, chunks=object)
    cpdef _on_arrival(self, double now, object _payload)
    @cython.locals(seq=Sequence, i=long)
    @cython.locals(r=long, remote=long)
    cpdef long _place(self, Sequence seq, double now) except? -1
    @cython.locals(i=long, reason=str)
    cpdef _admit(self, Sequence seq, double now)
    cpdef _dispatch(self, Sequence seq, long r, double now)
    @cython.locals(r=long)
    cpdef send(self, Sequence seq, double now)
    cpdef _on_finished(self, list seqs, double now)
    cpdef double _peek_arrival(self) except? -1.0
    @cython.locals(peak=long)
    cpdef str _rejection(self, Sequence seq)
    @cython.locals(i=long)
    cpdef _store_progress(self, Sequence seq)
