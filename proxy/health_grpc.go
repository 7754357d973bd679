package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// grpcHealthMethod is the path of the standard gRPC health service's Check
// call (grpc.health.v1), which gRPC servers in every language provide.
const grpcHealthMethod = "/grpc.health.v1.Health/Check"

// maxGRPCHealthReply bounds the reply read: a HealthCheckResponse is a few
// bytes, so anything longer is no health service's.
const maxGRPCHealthReply = 4 << 10

// checkGRPC makes one Check call for service to u over client, which must
// speak HTTP/2 to it. The call is sent as a plain HTTP/2 request, over the
// route's own transport (and its upstream_tls settings), rather than through
// a gRPC client connection of its own per upstream: the messages are the
// generated ones, the framing is gRPC's five-byte prefix. An error says why
// u is not serving.
func checkGRPC(ctx context.Context, client *http.Client, u *Upstream, service string) error {
	msg, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return err
	}
	url := u.URL.JoinPath(grpcHealthMethod).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(grpcFrame(msg)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc health check %s: HTTP status %d, want 200", url, resp.StatusCode)
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxGRPCHealthReply+1))
	if err != nil {
		return fmt.Errorf("grpc health check %s: reading the reply: %w", url, err)
	}
	// A failed call has its status in the trailers, or in the headers of a
	// reply without a body (trailers-only).
	status, message := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	switch {
	case status == "":
		return fmt.Errorf("grpc health check %s: no grpc-status in the reply (not a gRPC server?)", url)
	case status != "0":
		return fmt.Errorf("grpc health check %s (service %q): grpc-status %s %q", url, service, status, message)
	}
	body, err := grpcMessage(reply)
	if err != nil {
		return fmt.Errorf("grpc health check %s: %w", url, err)
	}
	var hr healthpb.HealthCheckResponse
	if err := proto.Unmarshal(body, &hr); err != nil {
		return fmt.Errorf("grpc health check %s: decoding the reply: %w", url, err)
	}
	if hr.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health check %s (service %q): %s, want SERVING", url, service, hr.Status)
	}
	return nil
}

// grpcFrame prefixes msg as gRPC frames a message: an uncompressed flag
// byte, then the length, big-endian, in four bytes.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// grpcMessage is the one uncompressed message that reply frames.
func grpcMessage(reply []byte) ([]byte, error) {
	if len(reply) < 5 {
		return nil, fmt.Errorf("reply of %d bytes, want a framed message", len(reply))
	}
	if reply[0] != 0 {
		return nil, fmt.Errorf("compressed reply (flag %d), which was not asked for", reply[0])
	}
	n := binary.BigEndian.Uint32(reply[1:5])
	if uint64(n) != uint64(len(reply)-5) {
		return nil, fmt.Errorf("reply frames a %d-byte message in %d bytes", n, len(reply)-5)
	}
	return reply[5:], nil
}
