"""Per-notebook helpers: each topic module holds its notebook's widgets, figures and checks.

`intro` (00), `conv` and `kernel_learning` (01), `pool` (02), `norm` (03), `activations` (04),
`backprop` and `exercises` (05), `pipeline`, `softmax` and `features` (06), `speed` (07). They
share `_base` (the `Explorer` pattern and its controls), `_answers` (the answer readers and the
table-driven judges every `check_…` uses) and `_images` (the photograph and the named filters),
and never import each other. A topic module may keep a part in a private module of its own
(`_norm_axes`, `_chain_rule`, `_backprop_update`) and re-exports it.
Import the one you need: ``from cnnlib.widgets import conv``.
"""
