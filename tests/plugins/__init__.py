"""Small forward-model plug-ins used by the sample-job tests."""
