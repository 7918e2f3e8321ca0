"""Use cases of the attestor (enrollment, attestation, policy), free of HTTP."""
