"""The fine-tuned model in the formats other runtimes load, and each checked in its runtime."""
