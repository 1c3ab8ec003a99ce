"""HL7 FHIR R4: reading coding requests (DocumentReference, Parameters) and writing the results
(Condition, Procedure, Provenance, Bundle, OperationOutcome, CapabilityStatement).

Resources are built and checked with the `fhir.resources` models (its R4B package: R4's
structure for every resource used here). The routes are in service/api/routes/fhir.py.
"""
