package smartclient

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestClientINITransfer(t *testing.T) {
	for _, tc := range []struct {
		name, ini string
		want      Transfer
		wantErr   string // the key the error names
	}{
		{name: "none", ini: "[TCP]\nServer=erp\n"},
		{name: "empty section", ini: "[UPDATE]\n"},
		{name: "all", ini: "[update]\nMinRate=16\r\nRateWindow=30\nDeadline=2h\n",
			want: Transfer{MinRate: 16 << 10, RateWindow: 30 * time.Second, Deadline: 2 * time.Hour}},
		{name: "seconds", ini: "[UPDATE]\nDeadline=1800 ; half an hour\n", want: Transfer{Deadline: 30 * time.Minute}},
		{name: "off", ini: "[UPDATE]\nMinRate=off\nDeadline=OFF\n", want: Transfer{MinRate: -1, Deadline: -1}},
		{name: "connect retry", ini: "[UPDATE]\nConnectRetry=5m\n", want: Transfer{ConnectRetry: 5 * time.Minute}},
		{name: "connect retry in seconds", ini: "[UPDATE]\nconnectretry=90\n", want: Transfer{ConnectRetry: 90 * time.Second}},
		{name: "connect retry off", ini: "[UPDATE]\nConnectRetry=off\n", want: Transfer{ConnectRetry: -1}},
		{name: "connect retry 0 is off", ini: "[UPDATE]\nConnectRetry=0\n", want: Transfer{ConnectRetry: -1}},
		{name: "bad connect retry", ini: "[UPDATE]\nConnectRetry=often\n", wantErr: "connectretry"},
		{name: "other keys are left to their readers", ini: "[UPDATE]\nAllowUnsigned=1\n"},
		{name: "negative rate", ini: "[UPDATE]\nMinRate=-5\n", wantErr: "minrate"},
		{name: "rate with a unit", ini: "[UPDATE]\nMinRate=32KB\n", wantErr: "minrate"},
		{name: "bad deadline", ini: "[UPDATE]\nDeadline=soon\n", wantErr: "deadline"},
		{name: "negative deadline", ini: "[UPDATE]\nDeadline=-1h\n", wantErr: "deadline"},
		{name: "window under a second", ini: "[UPDATE]\nRateWindow=10ms\n", wantErr: "ratewindow"},
		{name: "window off", ini: "[UPDATE]\nRateWindow=off\n", wantErr: "ratewindow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseClientINI("smartclient.ini", []byte(tc.ini))
			if tc.wantErr != "" {
				var ce *ClientINIError
				if !errors.As(err, &ce) || ce.Key != tc.wantErr || !strings.Contains(err.Error(), "[update] "+tc.wantErr) {
					t.Fatalf("got %v; want an error naming [update] %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Transfer != tc.want {
				t.Errorf("got %+v; want %+v", cfg.Transfer, tc.want)
			}
		})
	}
}

func TestBoundsOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     Options
		total int64
		want  transferBounds
	}{
		{name: "defaults for 200 MB", total: 200 << 20,
			want: transferBounds{minRate: DefaultMinRate, window: DefaultRateWindow, deadline: 6400*time.Second + deadlineMargin}},
		{name: "fixed cap", o: Options{Deadline: time.Hour}, total: 200 << 20,
			want: transferBounds{minRate: DefaultMinRate, window: DefaultRateWindow, deadline: time.Hour}},
		{name: "all off", o: Options{MinRate: -1, Deadline: -1},
			want: transferBounds{window: DefaultRateWindow}},
		{name: "no minimum, default deadline at the default rate", o: Options{MinRate: -1}, total: 32 << 10,
			want: transferBounds{window: DefaultRateWindow, deadline: time.Second + deadlineMargin}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := boundsOf(tc.o, tc.total); got != tc.want {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}
