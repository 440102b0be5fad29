"""VAEs with Gaussian, Bernoulli or categorical latents, trained with any gradvar estimator."""
