"""The REST and WebSocket API: run zyra commands, upload inputs, stream logs, download outputs."""
