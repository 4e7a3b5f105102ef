package mirror

// ProtocolFor is protocolFor, for tests that talk to a mirror as its peers do.
var ProtocolFor = protocolFor
