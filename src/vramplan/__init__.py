"""vramplan: what it takes to run or fine-tune an LLM."""
__version__ = "0.1.0"
