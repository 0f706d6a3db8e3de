"""Per-notebook helpers: each topic module holds its notebook's widgets, figures and checks.

`intro` (00), `conv` (01), `pool` (02), `norm` (03), `activations` (04), `backprop` (05),
`pipeline` (06), `speed` (07); `_base` is the `Explorer` pattern they share.
Import the one you need: ``from cnnlib.widgets import conv``.
"""
