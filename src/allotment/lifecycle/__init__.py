"""The call lifecycle and the store's other compound steps: one module per use case.

Each module holds its request type, the one atomic step that runs inside a
store transaction, and, for the steps a group commit batches, the lock
footprint of that step beside it, derived by the same functions the step
uses:

- ``authorize``: reserve on every applicable budget, or refuse.
- ``commit``: swap a reservation for what the call used.
- ``record``: meter a call that was never authorized (post hoc).
- ``release``: give a reservation back; ``sweep`` expired ones.
- ``reads``: status and usage breakdowns, and the queries for them and the ledger.
- ``budgets``: find, claim, write and recount budgets and rates.
- ``maintenance``: rebuild, archive and re-price the ledger.

A step names the narrowest transaction capabilities it needs (``tx``), as
small protocols a backend implements; the store package composes them into
transactions (``allotment.store``), and the ``Governor`` prepares the
requests. Nothing here imports a backend.
"""
