"""SegRec: segment-integrated video-level CTR (spec section 4; paper task 2).

A backbone CTR model (WideDeep or DIN) scores every segment slot of a candidate video; the
video-level prediction weights those slot logits by the frozen segment interest of a trained
segint model: ``sigmoid(sum_j softmax(p)_j * y_j)`` over the video's real slots.

Modules: `segrec.config` (the frozen model config), `segrec.labels` (effective-view label),
`segrec.network` (backbones and integration), `segrec.data` (model inputs from a table),
`segrec.interest` (frozen interest / ItemPosition weights), `segrec.metrics`,
`segrec.train` (training loop and run directories), `segrec.report` (seeds, t-tests, tables),
`segrec.onnx` (the CTR head as an exportable module, exported by `export.ctr`).
"""
