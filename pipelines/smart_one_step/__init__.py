"""One-step generation with a GAN generator trained with SMaRt."""
