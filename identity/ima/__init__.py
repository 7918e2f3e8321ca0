"""Linux IMA measurement lists: parsing, template hashes, PCR10 replay, appraisal."""
