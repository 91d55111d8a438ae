module allotment.example

go 1.19
