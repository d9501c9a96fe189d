"""``edgescaler replay``: what would a policy have done to a recorded load?

A load trace is replayed minute by minute through the real policy, decision engine and guard,
against a simulated cluster whose scale-outs join after a random delay (and may fail). The result
is scored against three reactive baselines and a clairvoyant oracle.

One concept per module:

* :mod:`.traces`    load a trace (the shared CSVs, ``timestamp,value`` CSV, Prometheus JSON)
  and put it on the replay's regular grid; gaps stay gaps;
* :mod:`.cluster`   the simulated cluster and its task model (call → joining → ready / failed);
* :mod:`.simulator` the replay loop: guard, decision, budgets, scale-out, as the pipeline does;
* :mod:`.baselines` target tracking, step and threshold policies built from the user's policy;
* :mod:`.oracle`    the floor: adds exactly what the future needs, one maximum join delay ahead;
* :mod:`.scoring`   unmet demand, nodes added, node-hours;
* :mod:`.plot`      the picture (matplotlib, imported lazily; ``pip install edgescaler[replay]``);
* :mod:`.command`   the CLI verb: options, seeds, the table and ``--json``.

Not part of the Function Compute package.
"""
