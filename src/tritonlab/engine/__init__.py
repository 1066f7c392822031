"""LLM engines for lab 5: ``tritonlab.engine.trtllm`` drives real TensorRT-LLM 1.2.x (GPU learners, the TRT-LLM
container); the embedded engine that runs on every machine lives beside it."""
