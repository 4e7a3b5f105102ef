package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/discoregistry/disco/internal/config"
)

// newLogger returns Disco's logger, set up from the log section, and sets up the
// Distribution library's logger (logrus) to match.
func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	lc := c.Registry.Log
	var level slog.Level
	switch strings.ToLower(string(lc.Level)) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if lc.Formatter == "json" || lc.Formatter == "logstash" {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(h)
	for k, v := range lc.Fields {
		log = log.With(k, v)
	}

	logrus.SetOutput(w)
	if l, err := logrus.ParseLevel(string(lc.Level)); err == nil {
		logrus.SetLevel(l)
	}
	logrus.SetReportCaller(lc.ReportCaller)
	if lc.Formatter == "json" || lc.Formatter == "logstash" {
		logrus.SetFormatter(&logrus.JSONFormatter{})
	}
	if len(lc.Fields) > 0 {
		logrus.AddHook(fieldsHook(lc.Fields))
	}
	return log
}

// fieldsHook adds log.fields to the Distribution library's log lines.
type fieldsHook map[string]any

func (fieldsHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h fieldsHook) Fire(e *logrus.Entry) error {
	for k, v := range h {
		if _, ok := e.Data[k]; !ok {
			e.Data[k] = v
		}
	}
	return nil
}
