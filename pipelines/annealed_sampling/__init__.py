"""Multi-step sampling of a diffusion score model with annealed Langevin or consistent annealed sampling."""
