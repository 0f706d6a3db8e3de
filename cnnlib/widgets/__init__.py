"""Per-notebook helpers: each topic module holds its notebook's widgets, figures and checks.

`intro` (00), `conv` and `kernel_learning` (01), `pool` (02), `norm` (03), `activations` (04),
`backprop` and `exercises` (05), `pipeline`, `softmax` and `features` (06), `speed` (07). They
share `_base` (the `Explorer` pattern and the answer readers every `check_…` uses) and `_images`
(the photograph and the named filters), and never import each other.
Import the one you need: ``from cnnlib.widgets import conv``.
"""
