//! Real object-store servers for tests (moto for S3, Azurite for Azure Blob), started and stopped by PID.
