// TidemarkCore: plan, copier, replayer, verifier, cutover.
