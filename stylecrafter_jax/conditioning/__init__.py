"""Text and image conditioning: the CLIP tokenizer, style-image preprocessing and the jitted frozen encoders."""
