"""What several analyses share, below them: the lens primitives (`lens`), the distance measures
(`distances`), SAEs and their files (`sae`), a comparison's result (`comparison`), the logit
metric and its answer/wrong tokens (`metric`), the staged patched-rows engine (`rows`), teacher-
forced word pieces (`pieces`), the decode loop's settings and continuations (`decode`) and a
steering vector (`vector`). An analysis imports core and these, never another analysis
(tests/unit/test_layers.py)."""
