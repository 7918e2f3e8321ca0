"""The operator API's request and response models (pydantic), shared by the API routes,
the services that build them and the Python client (attestor/client) that reads them.
Neither FastAPI nor the database is imported here."""
