"""Mixed-effects models of in-flight adaptation and post-flight deconditioning."""
