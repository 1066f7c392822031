"""The python-backend models tritonlab writes into a TensorRT-LLM model repository (copied as ``1/model.py``).

They run inside the TRT-LLM container (``triton_python_backend_utils`` and ``transformers`` are there), never in
tritonlab's own process.
"""
