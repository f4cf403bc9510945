package storage

// DecodeInvalidation reads a NOTIFY payload, for the tests that listen.
var DecodeInvalidation = decodeInvalidation
