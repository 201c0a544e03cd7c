"""Small analytic study models built from the hardware models (reproductions of KV-cache, memory
tier and storage papers). Each study is a function of a strict config returning a flat dict."""
