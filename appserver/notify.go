package appserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail"
	"github.com/erpupdate/smartsync/syncproto"
)

func parseMailAddress(s string) (string, error) { return mail.ParseAddress(s) }

// mailOutcome is the update helper's and recovery's handover.Notify: it
// mails with the [MAIL] settings of the configuration at configFile.
func mailOutcome(log *slog.Logger, configFile, to string, st syncproto.UpdateStatus) {
	sendOutcome(context.Background(), log, mailConfigOf(log, configFile), to, st)
}

// mailConfigOf reads [MAIL] from the configuration at path, which the
// helper and recovery read rather than keep a password in the journal.
func mailConfigOf(log *slog.Logger, path string) MailConfig {
	cfg, err := LoadConfig(path)
	if err != nil {
		log.Error("self-update: reading [MAIL] for the outcome mail", "config", path, "err", err)
		return MailConfig{}
	}
	return cfg.Mail
}

// sendOutcome mails the outcome of an update to the administrator who
// asked for it. A failure is logged and nothing more: mail never holds up
// or undoes an update.
func sendOutcome(ctx context.Context, log *slog.Logger, mc MailConfig, to string, st syncproto.UpdateStatus) {
	subject, body := outcomeMail(st)
	cfg := mail.Config{Host: mc.Host, Port: mc.Port, From: mc.From, User: mc.User, Password: mc.Password,
		StartTLS: mc.StartTLS, Timeout: 30 * time.Second}
	err := mail.Send(ctx, cfg, to, subject, body)
	switch {
	case errors.Is(err, mail.ErrNoMail):
		log.Warn("self-update: no mail sent: [MAIL] Host is not set in AppServer.ini", "to", to)
	case err != nil:
		log.Error("self-update: mailing the outcome failed; the update is not affected", "to", to, "err", err)
	default:
		log.Info("self-update: outcome mailed", "to", to, "id", st.ID)
	}
}

// outcomeMail is the subject and text of the outcome mail.
func outcomeMail(st syncproto.UpdateStatus) (string, string) {
	host, _ := os.Hostname()
	var subject string
	switch st.State {
	case syncproto.StateDone:
		subject = fmt.Sprintf("appserver on %s updated to build %s", host, st.NewBuild)
	case syncproto.StateReverted:
		subject = fmt.Sprintf("appserver on %s: update to %s failed, reverted to %s", host, st.NewBuild, st.OldBuild)
	case syncproto.StateCancelled:
		subject = fmt.Sprintf("appserver on %s: update cancelled", host)
	default:
		subject = fmt.Sprintf("appserver on %s: update failed, nothing was changed", host)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Outcome:   %s\n", st.State)
	fmt.Fprintf(&b, "Update:    %s\n", st.ID)
	fmt.Fprintf(&b, "Server:    %s\n", host)
	fmt.Fprintf(&b, "Release:   %s\n", st.Source)
	fmt.Fprintf(&b, "Old build: %s\n", orNone(st.OldBuild))
	fmt.Fprintf(&b, "New build: %s\n", orNone(st.NewBuild))
	fmt.Fprintf(&b, "Finished:  %s\n", time.Unix(st.When, 0).Format(time.RFC1123Z))
	if st.Message != "" {
		fmt.Fprintf(&b, "Reason:    %s\n", st.Message)
	}
	return subject, b.String()
}
