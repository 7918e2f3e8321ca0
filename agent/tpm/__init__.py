"""TPM access for the agent and the simulators (tpm2-pytss ESAPI)."""
