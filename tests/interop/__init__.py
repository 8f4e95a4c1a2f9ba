"""Interop tests: real tus clients (tus-js-client in Node, tuspy) against a real pytusd process."""
