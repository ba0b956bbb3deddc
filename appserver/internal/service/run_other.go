//go:build !windows

package service

import "context"

func serveOS(ctx context.Context, name string, serve func(context.Context) error) error {
	return serve(ctx)
}
