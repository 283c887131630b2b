// Package httpapi is the order service's HTTP API:
//
//	POST /orders                  {"order_id"?, "customer_id", "items": [{"product_id", "quantity"}]} -> 201 order
//	POST /orders/{id}/items       {"product_id", "quantity", "expected_version"?}                       -> 200 order
//	POST /orders/{id}/cancel      {"reason"?, "expected_version"?}                                      -> 200 order
//	POST /orders/{id}/ship        {"expected_version"?}                                                 -> 200 order
//	GET  /orders/{id}             read model (eventually consistent; ?consistent=1 folds the stream)
//	GET  /customers/{id}/orders   read model, newest first
//	GET  /sagas/{id}              saga state and step log
//	GET  /metrics                 Prometheus
//
// Errors are JSON {"error": "...", "code": "..."} with 400 (bad input),
// 404 (unknown order, customer, product or saga), 409 (version conflict
// or a rule of the order refused the command) and 500 (anything else,
// with details only in the log).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// Handler serves the API of svc.
func Handler(svc *app.Service, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", h.place)
	mux.HandleFunc("POST /orders/{id}/items", h.addItem)
	mux.HandleFunc("POST /orders/{id}/cancel", h.cancel)
	mux.HandleFunc("POST /orders/{id}/ship", h.ship)
	mux.HandleFunc("GET /orders/{id}", h.getOrder)
	mux.HandleFunc("GET /customers/{id}/orders", h.customerOrders)
	mux.HandleFunc("GET /sagas/{id}", h.getSaga)
	mux.Handle("GET /metrics", promhttp.HandlerFor(svc.Metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

type handler struct {
	svc *app.Service
	log *slog.Logger
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

// fail maps a command error to its status.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var conflict *eventstore.ConflictError
	switch {
	case errors.As(err, &conflict):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "code": "version_conflict",
			"expected_version": conflict.Expected, "actual_version": conflict.Actual})
	case errors.Is(err, orders.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, orders.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, app.ErrUnknownCustomer), errors.Is(err, app.ErrUnknownProduct):
		// The request names something that does not exist: bad input.
		writeError(w, http.StatusBadRequest, "unknown_reference", err.Error())
	case errors.Is(err, orders.ErrExists), errors.Is(err, orders.ErrCancelShipped), errors.Is(err, orders.ErrAlreadyCancel),
		errors.Is(err, orders.ErrAddNotPending), errors.Is(err, orders.ErrShipConfirmed), errors.Is(err, orders.ErrConfirmPending):
		writeError(w, http.StatusConflict, "rule", err.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "canceled", "request canceled")
	default:
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

func (h *handler) place(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OrderID    string            `json:"order_id"`
		CustomerID int64             `json:"customer_id"`
		Items      []app.ItemRequest `json:"items"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.CustomerID <= 0 || len(req.Items) == 0 {
		writeError(w, http.StatusBadRequest, "invalid", "customer_id > 0 and at least one item are required")
		return
	}
	for _, it := range req.Items {
		if it.ProductID <= 0 || it.Quantity <= 0 {
			writeError(w, http.StatusBadRequest, "invalid", "every item needs product_id > 0 and quantity > 0")
			return
		}
	}
	o, err := h.svc.PlaceOrder(r.Context(), req.OrderID, req.CustomerID, req.Items)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, o)
}

// expected reads an optional expected_version (absent: any version).
func expected(v *int64) int64 {
	if v == nil {
		return orders.Any
	}
	return *v
}

func (h *handler) addItem(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ProductID       int64  `json:"product_id"`
		Quantity        int64  `json:"quantity"`
		ExpectedVersion *int64 `json:"expected_version"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.ProductID <= 0 || req.Quantity <= 0 {
		writeError(w, http.StatusBadRequest, "invalid", "product_id > 0 and quantity > 0 are required")
		return
	}
	o, err := h.svc.AddItem(r.Context(), r.PathValue("id"), expected(req.ExpectedVersion), app.ItemRequest{ProductID: req.ProductID, Quantity: req.Quantity})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason          string `json:"reason"`
		ExpectedVersion *int64 `json:"expected_version"`
	}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	if req.Reason == "" {
		req.Reason = "cancelled by customer"
	}
	o, err := h.svc.Cancel(r.Context(), r.PathValue("id"), expected(req.ExpectedVersion), req.Reason)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *handler) ship(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExpectedVersion *int64 `json:"expected_version"`
	}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	o, err := h.svc.Ship(r.Context(), r.PathValue("id"), expected(req.ExpectedVersion))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *handler) getOrder(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.URL.Query().Get("consistent") == "1" {
		// The write model: fold the stream (one shard, always current).
		o, err := h.svc.Orders.Load(r.Context(), id)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if o.Version == 0 {
			writeError(w, http.StatusNotFound, "not_found", "order not found")
			return
		}
		writeJSON(w, http.StatusOK, o)
		return
	}
	v, ok, err := h.svc.Queries.FindByID(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "order not found (the read model may lag a write by a moment)")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) customerOrders(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "invalid", "customer id must be a positive integer")
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit <= 0 || limit > 1000 {
			writeError(w, http.StatusBadRequest, "invalid", "limit must be 1..1000")
			return
		}
	}
	if _, ok, err := h.svc.Payment.Balance(r.Context(), id); err != nil {
		h.fail(w, r, err)
		return
	} else if !ok {
		writeError(w, http.StatusNotFound, "not_found", "customer not found")
		return
	}
	list, err := h.svc.Queries.FindByCustomer(r.Context(), id, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"customer_id": id, "orders": list})
}

func (h *handler) getSaga(w http.ResponseWriter, r *http.Request) {
	st, ok, err := saga.Get(r.Context(), h.svc.Pool, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "saga not found")
		return
	}
	writeJSON(w, http.StatusOK, st)
}
