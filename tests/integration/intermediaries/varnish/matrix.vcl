# Varnish 7.7 in front of the stack's nginx. The built-in VCL passes POST
# requests (no caching) and streams responses (beresp.do_stream defaults to
# true since Varnish 4). Each listen address below changes one thing.
# Ref: https://varnish-cache.org/docs/7.7/reference/vcl-var.html
vcl 4.1;

backend stack {
  .host = "nginx";
  .port = "8080";
}

# The idle configuration: a short wait between bytes from the backend.
backend stack_short {
  .host = "nginx";
  .port = "8080";
  .between_bytes_timeout = 0.8s;
}

sub vcl_recv {
  set req.http.X-Matrix = local.socket;
  if (local.socket == "idle") {
    set req.backend_hint = stack_short;
  } else {
    set req.backend_hint = stack;
  }
}

sub vcl_backend_response {
  if (bereq.http.X-Matrix == "compression") {
    # Compress what the backend sends (as for any text).
    set beresp.do_gzip = true;
  }
  if (bereq.http.X-Matrix == "buffered") {
    # Fetch the whole body before delivering it.
    set beresp.do_stream = false;
  }
}
