// Package rawio reads and writes TCP sockets with raw system calls (see
// Wrap). It is a leaf of the module, shared by mux (client streams) and
// proxy (upstream connections), which must not import each other.
package rawio
