"""The server's route families, one module each; `create_app` composes them over one `Serving`."""
